# Softmax-gated mixture of linear-Gaussian experts in flexmix:
# FLXMRglm(family = "gaussian") experts + FLXPmultinom concomitant (softmax gate on [1, x]).
# Inputs (see benchmarks/_peers.py): X (n x d), y (n), post0 (n x K initial posteriors: the
# first thing flexmix does is an M-step from them); params.json: K, iter_max, tol.
# Output: ll (flexmix's logLik), iter, converged, seconds (fit only, timed inside R),
# trace_ll, trace_t (elapsed seconds at each iteration), coef (d+1 x K), sigma (K),
# gating (d+1 x K, flexmix's gauge: component 1 = 0),
# post (n x K final posteriors are not returned to keep the file small).
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "_io.R"))
suppressPackageStartupMessages(library(flexmix))

prm <- read_params()
X <- read_mat("X")
y <- read_vec("y")
post0 <- read_mat("post0")
d <- ncol(X)
colnames(X) <- paste0("x", seq_len(d))
dat <- data.frame(y = y, X)
rhs <- paste(colnames(X), collapse = " + ")
ctl <- list(iter.max = prm$iter_max, tolerance = prm$tol, minprior = 0, verbose = 1)

flexmix_start_trace()
t0 <- proc.time()[["elapsed"]]
invisible(capture.output(
  m <- flexmix(as.formula(paste("y ~", rhs)), data = dat, k = prm$K, cluster = post0,
               model = FLXMRglm(family = "gaussian"),
               concomitant = FLXPmultinom(as.formula(paste("~", rhs))), control = ctl)))
sec <- proc.time()[["elapsed"]] - t0

par <- parameters(m)                       # rows: coef.(Intercept), coef.x1.., sigma
conc <- parameters(m, which = "concomitant")  # rows: (Intercept), x1..; column 1 is 0
write_out(list(ll = as.numeric(logLik(m)), df = attr(logLik(m), "df"), iter = m@iter,
               converged = m@converged, seconds = sec, trace_ll = flexmix_trace_env$ll,
               trace_t = flexmix_trace_env$t,
               K_final = length(m@components),
               coef = unname(par[seq_len(d + 1), , drop = FALSE]),
               sigma = unname(par[d + 2, ]),
               gating = unname(as.matrix(conc))))
