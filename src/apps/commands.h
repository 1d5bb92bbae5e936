// Entry points of the hippo subcommands. Each takes argv with argv[0] = the command name, returns
// the process exit code, and throws hippo::Error for bad input (printed as one line by main).
#pragma once

namespace hippo {
int cmd_info(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_plot(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_import(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_score(int argc, char** argv);
}  // namespace hippo
