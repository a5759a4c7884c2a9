# Latent class conditional logit on long-format panel data in flexmix (varying choice sets,
# a person keeps one class, concomitant multinomial logit of the class weights).
# Inputs: X (n_rows x L attributes), y (n_rows, 0/1 chosen), situation (n_rows), id (n_rows,
# person), Z (n_rows x q, person-level covariates), post0 (n_rows x K initial posteriors, equal
# within a person); params.json: K, iter_max, tol.
# Model: flexmix(y ~ x1 + ... + xL | id, model = FLXMRcondlogit(strata = ~ situation),
#                concomitant = FLXPmultinom(~ z1 + ... + zq)).
# Output: ll, iter, converged, seconds (fit only), prior, coef, concomitant coefficients.
args <- commandArgs(TRUE)
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "_io.R"))
suppressPackageStartupMessages({library(flexmix); library(survival)})

prm <- read_params()
X <- read_mat("X")
Z <- read_mat("Z")
post0 <- read_mat("post0")
L <- ncol(X); q <- ncol(Z)
colnames(X) <- paste0("x", seq_len(L))
colnames(Z) <- paste0("z", seq_len(q))
d <- data.frame(y = read_vec("y"), situation = read_vec("situation"), id = read_vec("id"),
                X, Z)
fml <- as.formula(paste("y ~", paste(colnames(X), collapse = " + "), "| id"))
conc <- as.formula(paste("~", paste(colnames(Z), collapse = " + ")))
ctl <- list(iter.max = prm$iter_max, tolerance = prm$tol, minprior = 0, verbose = 0)

t0 <- proc.time()[["elapsed"]]
m <- flexmix(fml, data = d, k = prm$K, cluster = post0,
             model = FLXMRcondlogit(strata = ~ situation),
             concomitant = FLXPmultinom(conc), control = ctl)
sec <- proc.time()[["elapsed"]] - t0

write_out(list(ll = as.numeric(logLik(m)), iter = m@iter, converged = m@converged,
               seconds = sec, prior = as.numeric(prior(m)), coef = unname(parameters(m)),
               concomitant = unname(parameters(m, which = "concomitant"))))
