#pragma once
// The cereal peer: the state through cereal's binary archives and std::fstream, as a user of
// plain cereal writes it (Eigen matrices by hand), the file fsynced after a save.

#include "state.hpp"

#include <string>

namespace bench {

double cereal_save(const std::string& path, const train_state& st);
double cereal_load(const std::string& path, train_state& st);

} // namespace bench
