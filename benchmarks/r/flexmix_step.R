# stepFlexmix over a grid of K for a softmax-gated Gaussian mixture of experts
# (FLXMRglm gaussian + FLXPmultinom concomitant), nrep random starts per K.
# Inputs (benchmarks/_peers.py): X (n x d), y (n); params.json: ks, nrep, iter_max, tol, seed.
# Output: ks, loglik, bic, df (parameters counted), k_final (components left per K),
# best_k (by BIC), seconds (the stepFlexmix call only, timed inside R).
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "_io.R"))
suppressPackageStartupMessages(library(flexmix))

prm <- read_params()
X <- read_mat("X")
y <- read_vec("y")
d <- ncol(X)
colnames(X) <- paste0("x", seq_len(d))
dat <- data.frame(y = y, X)
rhs <- paste(colnames(X), collapse = " + ")
set.seed(prm$seed)
ctl <- list(iter.max = prm$iter_max, tolerance = prm$tol, minprior = 0)
t0 <- proc.time()[["elapsed"]]
invisible(capture.output(
  s <- stepFlexmix(as.formula(paste("y ~", rhs)), data = dat, k = prm$ks, nrep = prm$nrep,
                   model = FLXMRglm(family = "gaussian"),
                   concomitant = FLXPmultinom(as.formula(paste("~", rhs))), control = ctl,
                   verbose = FALSE)))
sec <- proc.time()[["elapsed"]] - t0
models <- s@models
ll <- sapply(models, function(m) as.numeric(logLik(m)))
bic <- sapply(models, BIC)
df <- sapply(models, function(m) attr(logLik(m), "df"))
kf <- sapply(models, function(m) length(m@components))
write_out(list(ks = prm$ks, loglik = unname(ll), bic = unname(bic), df = unname(df),
               k_final = unname(kf), best_k = unname(kf[which.min(bic)]), seconds = sec))
