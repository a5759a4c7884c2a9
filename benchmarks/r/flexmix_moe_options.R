# Mixture of linear-Gaussian regressions in flexmix with the options of softmix's
# MixtureOfExperts (benchmarks/flexmix_moe_options.py):
#   gate = "constant"  -> concomitant FLXPconstant() (weights that do not depend on x)
#   gate = "softmax"   -> FLXPmultinom(~ w1 + ...) on the gate's own covariates Xgate
#   intercept = FALSE  -> y ~ x1 + ... - 1
#   varfix = TRUE      -> FLXMRglmfix(varFix = TRUE) (one variance shared by all components)
# Inputs: X (n x d), y (n), Xgate (n x q, only for gate = "softmax"), post0 (n x K initial
# posteriors); params.json: K, iter_max, tol, gate, intercept, varfix.
# With params dataset = "NPreg" and no other input, writes flexmix's NPreg data instead
# (x, yn) and exits.
# Output: ll, iter, converged, seconds (fit only), trace_ll, trace_t, K_final, prior.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "_io.R"))
suppressPackageStartupMessages(library(flexmix))

prm <- read_params()
if (!is.null(prm$dataset)) {
  data("NPreg", package = "flexmix", envir = environment())
  write_out(list(x = NPreg$x, yn = NPreg$yn, class = NPreg$class))
  quit(save = "no")
}
X <- read_mat("X")
y <- read_vec("y")
post0 <- read_mat("post0")
d <- ncol(X)
colnames(X) <- paste0("x", seq_len(d))
dat <- data.frame(y = y, X)
rhs <- paste(colnames(X), collapse = " + ")
if (!isTRUE(prm$intercept)) rhs <- paste(rhs, "- 1")
if (prm$gate == "constant") {
  conc <- FLXPconstant()
} else {
  W <- read_mat("Xgate")
  colnames(W) <- paste0("w", seq_len(ncol(W)))
  dat <- cbind(dat, W)
  conc <- FLXPmultinom(as.formula(paste("~", paste(colnames(W), collapse = " + "))))
}
model <- if (isTRUE(prm$varfix)) FLXMRglmfix(varFix = TRUE) else FLXMRglm(family = "gaussian")
ctl <- list(iter.max = prm$iter_max, tolerance = prm$tol, minprior = 0, verbose = 1)

flexmix_start_trace()
t0 <- proc.time()[["elapsed"]]
invisible(capture.output(
  m <- flexmix(as.formula(paste("y ~", rhs)), data = dat, k = prm$K, cluster = post0,
               model = model, concomitant = conc, control = ctl)))
sec <- proc.time()[["elapsed"]] - t0

write_out(list(ll = as.numeric(logLik(m)), df = attr(logLik(m), "df"), iter = m@iter,
               converged = m@converged, seconds = sec, trace_ll = flexmix_trace_env$ll,
               trace_t = flexmix_trace_env$t, K_final = length(m@components),
               prior = as.numeric(prior(m))))
