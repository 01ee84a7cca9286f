"""Measurements of a network (signal propagation, Hessian, explosion onset) and the
numbers the one-run dashboard and the model-family figures show.

Pure functions over pytrees; `gradlab.theory` holds the closed forms they are checked
against. Nothing here trains a run or draws (`gradlab.diagnose` trains, `gradlab.viz`
draws). Modules: `signal` (at initialization), `hessian` (HVP, power iteration, the
in-scan sharpness and Adam's preconditioned sharpness, stochastic Lanczos quadrature),
`onset` (where and when an explosion starts), `run_summary` (one run's diagnostics as
JSON-ready numbers), `mean_field` (gradlab's init scales in the papers' variables),
`ln_depth` (Pre-LN vs Post-LN gradient against depth), `through_time` (RNN gradients
through time, from a sweep's trajectories).
"""
