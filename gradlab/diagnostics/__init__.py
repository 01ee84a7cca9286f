"""Measurements of a network (signal propagation, Hessian, explosion onset).

Pure functions over pytrees; `gradlab.theory` holds the closed forms they are checked
against. Modules: `signal` (at initialization), `hessian` (HVP, power iteration, Adam's
preconditioned sharpness, stochastic Lanczos quadrature), `onset` (where and when an
explosion starts).
"""
