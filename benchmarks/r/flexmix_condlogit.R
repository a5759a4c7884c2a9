# Mixture of conditional logits (= softmax mixture on a fixed design) in flexmix.
# Inputs: X (p x L design), choices (N, 1-based chosen alternative) or, with aggregate = TRUE,
# counts (p); post0 (N x K, or p x K when aggregated: initial posteriors); params.json:
# K, iter_max, tol, aggregate.
# Long format: one stratum per observation (N * p rows), or, aggregated, one stratum per chosen
# alternative weighted by its count (p_used * p rows; same likelihood).
# Output: ll, iter, converged, seconds (fit only), trace_t / trace_ll per iteration, prior, coef.
args <- commandArgs(TRUE)
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "_io.R"))
suppressPackageStartupMessages({library(flexmix); library(survival)})

prm <- read_params()
X <- read_mat("X")
post0 <- read_mat("post0")
p <- nrow(X); L <- ncol(X)
if (isTRUE(prm$aggregate)) {
  counts <- read_vec("counts")
  chosen <- which(counts > 0)
  w_strata <- counts[chosen]
} else {
  chosen <- read_vec("choices")
  w_strata <- NULL
}
S <- length(chosen)
colnames(X) <- paste0("x", seq_len(L))
d <- data.frame(id = rep(seq_len(S), each = p),
                y = as.integer(rep(seq_len(p), S) == rep(chosen, each = p)),
                X[rep(seq_len(p), S), , drop = FALSE])
cl <- post0[rep(seq_len(S), each = p), , drop = FALSE]
wts <- if (is.null(w_strata)) NULL else rep(as.integer(w_strata), each = p)
fml <- as.formula(paste("y ~", paste(colnames(X), collapse = " + "), "| id"))
ctl <- list(iter.max = prm$iter_max, tolerance = prm$tol, minprior = 0, verbose = 1)

flexmix_start_trace()
t0 <- proc.time()[["elapsed"]]
invisible(capture.output(
  m <- flexmix(fml, data = d, k = prm$K, cluster = cl, weights = wts,
               model = FLXMRcondlogit(strata = ~ id), control = ctl)))
sec <- proc.time()[["elapsed"]] - t0

write_out(list(ll = as.numeric(logLik(m)), iter = m@iter, converged = m@converged,
               seconds = sec, trace_t = flexmix_trace_env$t, trace_ll = flexmix_trace_env$ll,
               prior = as.numeric(prior(m)), coef = unname(parameters(m)), n_rows = nrow(d)))
