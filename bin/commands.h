// The subcommands of infant-synthseg. Each takes the arguments after its name and returns the
// exit status; bad input throws iss::InputError (exit 2).
#pragma once

namespace iss::cli {

int cmd_clean(int argc, char** argv);
int cmd_dice(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_import(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_merge(int argc, char** argv);
int cmd_predict(int argc, char** argv);
int cmd_phantom(int argc, char** argv);
int cmd_priors(int argc, char** argv);
int cmd_synth(int argc, char** argv);
int cmd_train(int argc, char** argv);

}  // namespace iss::cli
