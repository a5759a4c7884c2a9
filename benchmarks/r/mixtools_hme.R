# Two-expert softmax-gated Gaussian MoE with one covariate in mixtools::hmeEM.
# Inputs: x (n), y (n), beta0 (2 x 2: rows intercept, slope; columns experts), w0 (2: gating
# intercept and slope of expert 1; expert 2 is the reference), params.json: sigma0 (2 standard
# deviations), epsilon (absolute log-likelihood change), maxit.
# Output: ll, all_loglik (start and every iteration), iter, seconds (fit only), restarts
# (hmeEM silently restarts from random values when the likelihood decreases), w, beta, sigma.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "_io.R"))
suppressPackageStartupMessages(library(mixtools))
prm <- read_params()
x <- read_vec("x"); y <- read_vec("y")
beta0 <- read_mat("beta0"); w0 <- read_vec("w0")
set.seed(1)
t0 <- proc.time()[["elapsed"]]
invisible(capture.output(
  m <- hmeEM(y, x, beta = beta0, sigma = prm$sigma0, w = w0, k = 2,
             epsilon = prm$epsilon, maxit = prm$maxit)))
sec <- proc.time()[["elapsed"]] - t0
write_out(list(ll = m$loglik, all_loglik = m$all.loglik, iter = length(m$all.loglik) - 1,
               seconds = sec, restarts = m$restarts, w = as.numeric(m$w),
               beta = unname(m$beta), sigma = as.numeric(m$sigma)))
