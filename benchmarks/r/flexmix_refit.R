# Standard errors of a softmax-gated Gaussian mixture of experts by flexmix's refit():
# FLXMRglm(family = "gaussian") experts + FLXPmultinom(~ x) concomitant, fitted from the
# posteriors post0, then refit(m) (optim on the full likelihood, numerical Hessian).
# Inputs (benchmarks/_peers.py): X (n x d), y (n), post0 (n x K); params.json: K, iter_max, tol.
# Output: ll, converged, coef / coef_se (d+1 x K), gating / gating_se (d+1 x (K-1): components
# 2..K against component 1, flexmix's gauge), sigma (K), seconds_fit, seconds_refit.
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
ctl <- list(iter.max = prm$iter_max, tolerance = prm$tol, minprior = 0)
t0 <- proc.time()[["elapsed"]]
m <- flexmix(as.formula(paste("y ~", rhs)), data = dat, k = prm$K, cluster = post0,
             model = FLXMRglm(family = "gaussian"),
             concomitant = FLXPmultinom(as.formula(paste("~", rhs))), control = ctl)
t1 <- proc.time()[["elapsed"]]
rm <- refit(m)
t2 <- proc.time()[["elapsed"]]
comp <- rm@components[[1]]
coef <- sapply(comp, function(cm) cm[, 1])
coef_se <- sapply(comp, function(cm) cm[, 2])
conc <- rm@concomitant
gating <- sapply(conc, function(cm) cm[, 1])
gating_se <- sapply(conc, function(cm) cm[, 2])
par <- parameters(m)
write_out(list(ll = as.numeric(logLik(m)), converged = m@converged,
               K_final = length(m@components),
               coef = unname(as.matrix(coef)), coef_se = unname(as.matrix(coef_se)),
               gating = unname(as.matrix(gating)), gating_se = unname(as.matrix(gating_se)),
               sigma = unname(par[d + 2, ]),
               seconds_fit = t1 - t0, seconds_refit = t2 - t1))
