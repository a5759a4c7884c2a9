# Panel mixture of conditional logits with a concomitant model in flexmix: each person makes
# several choices among the same p alternatives and keeps one class; class weights are a
# multinomial logit of person covariates (FLXPmultinom(~ z1 + ...)). The same model as
# softmix.SoftmaxMixture.fit(features, choices, groups=person, covariates=Z).
# Inputs: X (p x L design), choices (N, 1-based chosen alternative), person (N, 1-based group
# of each choice), Z (G x q person covariates, or absent), post0 (G x K initial posteriors);
# params.json: K, iter_max, tol.
# Long format: one stratum per choice (N * p rows), grouped by person with "| person".
# Output: ll, iter, converged, seconds (fit only), trace_t / trace_ll, df, K_final.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "_io.R"))
suppressPackageStartupMessages({library(flexmix); library(survival)})

prm <- read_params()
X <- read_mat("X")
chosen <- read_vec("choices")
person <- read_vec("person")
post0 <- read_mat("post0")
p <- nrow(X); L <- ncol(X); S <- length(chosen)
colnames(X) <- paste0("x", seq_len(L))
d <- data.frame(sid = rep(seq_len(S), each = p), person = rep(person, each = p),
                y = as.integer(rep(seq_len(p), S) == rep(chosen, each = p)),
                X[rep(seq_len(p), S), , drop = FALSE])
has_z <- file.exists(file.path(io_dir, "Z.csv"))
if (has_z) {
  Z <- read_mat("Z")
  colnames(Z) <- paste0("z", seq_len(ncol(Z)))
  d <- cbind(d, Z[d$person, , drop = FALSE])
  conc <- FLXPmultinom(as.formula(paste("~", paste(colnames(Z), collapse = " + "))))
} else {
  conc <- FLXPconstant()
}
cl <- post0[d$person, , drop = FALSE]
fml <- as.formula(paste("y ~", paste(colnames(X), collapse = " + "), "| person"))
ctl <- list(iter.max = prm$iter_max, tolerance = prm$tol, minprior = 0, verbose = 1)

flexmix_start_trace()
t0 <- proc.time()[["elapsed"]]
invisible(capture.output(
  m <- flexmix(fml, data = d, k = prm$K, cluster = cl, model = FLXMRcondlogit(strata = ~ sid),
               concomitant = conc, control = ctl)))
sec <- proc.time()[["elapsed"]] - t0

write_out(list(ll = as.numeric(logLik(m)), df = attr(logLik(m), "df"), iter = m@iter,
               converged = m@converged, seconds = sec, trace_t = flexmix_trace_env$t,
               trace_ll = flexmix_trace_env$ll, K_final = length(m@components),
               n_rows = nrow(d)))
