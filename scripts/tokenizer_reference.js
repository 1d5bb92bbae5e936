#!/usr/bin/env node
// Reference GPT-2 token ids from the npm tokenizers, for tests/test_tokenizer.cpp and
// scripts/tokenizer_compare.sh. Needs `scripts/fetch_tokenizer.sh --reference` (installs js-tiktoken
// 1.0.21, gpt-tokenizer 4.0.0 and gpt-3-encoder 1.1.4 into $HIPPO_DATA/node or ~/.cache/hippo/node).
//
//   node scripts/tokenizer_reference.js encode [--impl NAME] FILE   ids of FILE (read as UTF-8) on one line
//   node scripts/tokenizer_reference.js cases OUT.json              the edge-case fixture (all impls must agree)
//
// NAME: js-tiktoken (default, fast), gpt-tokenizer, gpt-3-encoder (very slow on big files).
// "<|endoftext|>" in the text is encoded as plain text by every implementation here.
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');

const cache = process.env.HIPPO_DATA || path.join(os.homedir(), '.cache', 'hippo');
const mods = path.join(cache, 'node', 'node_modules');
function need(name) {
  try {
    return require(path.join(mods, name));
  } catch (e) {
    console.error(`tokenizer_reference.js: cannot load ${name} from ${mods}; run scripts/fetch_tokenizer.sh --reference`);
    process.exit(2);
  }
}

const impls = {
  'js-tiktoken': () => {
    const enc = need('js-tiktoken').getEncoding('gpt2');
    return (s) => Array.from(enc.encode(s, [], []));
  },
  'gpt-tokenizer': () => {
    const enc = need('gpt-tokenizer/cjs/encoding/r50k_base');
    return (s) => Array.from(enc.encode(s, { disallowedSpecial: new Set() }));
  },
  'gpt-3-encoder': () => {
    const enc = need('gpt-3-encoder');
    return (s) => enc.encode(s);
  },
};

// Edge cases; only code points assigned in Unicode <= 15.0 (our tables' version, text/unicode.h).
const rep = (s, n) => s.repeat(n);
const cases = [
  '', ' ', '  ', '   ', '\n', '\n\n\n', '\t', 'a', 'Hello world', 'Hello  world', 'Hello   world  ',
  'trailing spaces   ', ' leading space', '  two leading', '\t\ttabs\tand\nnewlines\r\n', 'a  \n  b', '   \n',
  'line1\n\nline2\n', 'x \n', 'x\n ', ' \n \n ', 'end with newline\n', 'a\u00a0b', 'x\u3000y', 'x\u2028y\u2029z',
  '\ufeffBOM text', 'nel\u0085here', 'vt\u000bff\u000c', 'x\u1680y\u2000z\u200a!', '\u00a0\u00a0word',
  "I'm you're we've he'll she'd it's can't won't", "IT'S DON'T WE'LL", "'s 's' ''s ''' 'x", "o'clock 'twas",
  " 's", "rock'n'roll", "l'homme d'état", 'quotes \u2019s curly\u2019ll',
  '12345 3.14159 1,000,000 2024-01-01', 'abc123def x2y', '\u0663\u0664\u0665 \u0661\u0662', '\u216b \u00bd \u00b2 \u2460',
  '\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440', '\u3053\u3093\u306b\u3061\u306f\u4e16\u754c',
  '\u4e2d\u6587\u5b57\u7b26 \u6f22\u5b57', '\uc548\ub155\ud558\uc138\uc694', '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
  '\u05e9\u05dc\u05d5\u05dd', '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e',
  '\u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac', '\u00d1and\u00fa caf\u00e9 na\u00efve', 'e\u0301 combining a\u0308',
  '\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35', '\ud835\udc00\ud835\udc01 math bold', '\ud840\udc00 ext-B',
  '\ud83d\ude00\ud83d\ude03\ud83c\udf89 \ud83d\udc4d\ud83c\udffd', '\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 family',
  '\ud83c\uddfa\ud83c\uddf8 flag', 'I \u2764\ufe0f NY', ' \ud83d\ude00', '!!!???...', '<|endoftext|>', 'foo<|endoftext|>bar',
  '==========', '----- --- -', 'http://example.com/a_b?c=d&e=f#frag', 'def f(x):\n    return x**2\n',
  '    indented\n\tcode', '_underscore_ __dunder__', '\u0000\u0001\u007f control', '\u00ad soft\u00adhyphen',
  '\u2028', ' \u3000 ', 'a\u0009\u0009 b', 'mixed CASE MiXeD', '$100 \u20ac50 \u00a320', '@user #tag', 'e.g. i.e. etc.',
  rep('a', 300), rep(' ', 300), rep('=', 500), rep(' ', 200) + 'x', rep('\n', 50) + 'end', rep('\ud83e\udd16', 40),
  rep('ab', 150), rep('hello ', 60), rep('\u4e00', 100), rep("'", 20) + 's',
];

function main() {
  const argv = process.argv.slice(2);
  const cmd = argv.shift();
  let impl = 'js-tiktoken';
  const i = argv.indexOf('--impl');
  if (i >= 0) {
    impl = argv[i + 1];
    argv.splice(i, 2);
  }
  if (cmd === 'encode' && argv.length === 1) {
    if (!impls[impl]) throw new Error(`unknown --impl ${impl}`);
    const enc = impls[impl]();
    const text = fs.readFileSync(argv[0], 'utf8');
    process.stdout.write(enc(text).join(' ') + '\n');
  } else if (cmd === 'cases' && argv.length === 1) {
    const encs = Object.fromEntries(Object.keys(impls).map((k) => [k, impls[k]()]));
    const out = [];
    for (const text of cases) {
      const ref = encs['js-tiktoken'](text);
      for (const k of Object.keys(encs)) {
        const ids = encs[k](text);
        if (ids.join(',') !== ref.join(',')) throw new Error(`${k} disagrees with js-tiktoken on ${JSON.stringify(text)}`);
      }
      out.push({ text, ids: ref });
    }
    fs.writeFileSync(argv[0], '[\n' + out.map((c) => JSON.stringify(c)).join(',\n') + '\n]\n');
    console.error(`${out.length} cases, all ${Object.keys(encs).length} implementations agree -> ${argv[0]}`);
  } else {
    console.error('usage: tokenizer_reference.js encode [--impl NAME] FILE | cases OUT.json');
    process.exit(2);
  }
}
main();
