"""Model-agnostic numerics shared by every softmix model: special functions, the fit result,
the one EM driver, restarts and the weighted logistic solvers."""
