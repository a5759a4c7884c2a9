# Shared I/O of the benchmark R scripts (sourced by each; see benchmarks/_peers.py).
# The exchange folder is commandArgs(TRUE)[1]: <name>.csv matrices without header,
# params.json scalars; the script writes out.json.
suppressPackageStartupMessages(library(jsonlite))

io_dir <- commandArgs(TRUE)[1]

read_mat <- function(name) {
  as.matrix(read.csv(file.path(io_dir, paste0(name, ".csv")), header = FALSE))
}

read_vec <- function(name) as.vector(read_mat(name))

read_params <- function() fromJSON(file.path(io_dir, "params.json"))

write_out <- function(out) {
  writeLines(toJSON(out, digits = NA, auto_unbox = FALSE), file.path(io_dir, "out.json"))
}

# Record (elapsed seconds, iteration, log-likelihood) at every flexmix EM iteration by
# replacing flexmix's internal printIter (called once per iteration when verbose = 1).
# Costs one cat-free closure call per iteration.
flexmix_trace_env <- new.env()
flexmix_start_trace <- function() {
  flexmix_trace_env$t <- numeric(0)
  flexmix_trace_env$ll <- numeric(0)
  flexmix_trace_env$t0 <- proc.time()[["elapsed"]]
  assignInNamespace("printIter", function(iter, logLik, label = "Log-likelihood") {
    flexmix_trace_env$t <- c(flexmix_trace_env$t, proc.time()[["elapsed"]] - flexmix_trace_env$t0)
    flexmix_trace_env$ll <- c(flexmix_trace_env$ll, logLik)
  }, ns = "flexmix")
}
