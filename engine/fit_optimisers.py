"""How engine.laws.fit_law solves a fit: a Huber loss on log L minimised by scipy's
least_squares one point set at a time (`polish`), and by one Levenberg-Marquardt for
many weightings of the same points at once (`batched_huber_lm`: the starting grid of
a joint fit, every bootstrap refit), each checked against the other
(tests/test_laws.py). Nothing here knows about data frames or sizes; it sees log sizes
x, losses and weights.

Internal parameterisations, all predicting in log space:
  one-variable (Eq. 6, 7): theta = (log K, p, delta),  L = exp(p (log K - x)) + delta
  joint (Eq. 8):           theta = (log A, log B, alpha, beta, delta)
  additive:                theta = (log A, log B, alpha, beta, E),
                           L = exp(log A - alpha x_n) + exp(log B - beta x_d) + E
"""
from __future__ import annotations

from itertools import product

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

TWO_SIZE_KINDS = ("joint", "additive")    # theta of 5 columns above; any other kind is one-variable
EXPONENT_BOUNDS = (1e-3, 5.0)


# --- one fit: starts, then scipy --------------------------------------------------

def _bounds(kind, loss) -> tuple[np.ndarray, np.ndarray]:
    """Box bounds of the internal parameters: exponents in EXPONENT_BOUNDS, the floor in [0, max loss]."""
    lo_exp, hi_exp = EXPONENT_BOUNDS
    if kind in TWO_SIZE_KINDS:   # Eq. 8 divides by beta: keep it off 0
        return (np.array([-np.inf, -np.inf, lo_exp, 1e-2 if kind == "joint" else lo_exp, 0.0]),
                np.array([np.inf, np.inf, hi_exp, hi_exp, loss.max()]))
    return np.array([-np.inf, lo_exp, 0.0]), np.array([np.inf, hi_exp, loss.max()])


def polish(kind, theta0, x, loss, huber_scale, max_nfev=2000):
    """Huber on log L from theta0, tolerances tight enough to reach the optimum
    (within max_nfev evaluations)."""
    fun = lambda theta, x, log_loss: residuals_and_jacobian(kind, theta[None], x, log_loss)[0][0]  # noqa: E731
    jac = lambda theta, x, log_loss: residuals_and_jacobian(kind, theta[None], x, log_loss)[1][0]  # noqa: E731
    bounds = _bounds(kind, loss)
    theta0 = np.clip(theta0, np.array(bounds[0]) + 1e-12, np.array(bounds[1]) - 1e-12)
    result = least_squares(fun, theta0, jac=jac, bounds=bounds, args=(x, np.log(loss)),
                           loss="huber", f_scale=huber_scale, x_scale="jac",
                           xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=max_nfev)
    return result.x, result.cost


def _profile(exponents, x, loss):
    """Variable projection for a one-variable law: for each exponent p, the best
    (c, delta >= 0) of L = c exp(-p x) + delta in relative least squares, solved
    exactly (2x2 normal equations, vectorised over exponents).
    Returns log K, delta and the sum of squared relative errors, each (n_exponents,)."""
    p = np.atleast_1d(exponents)[:, None]                  # (m, 1)
    w = 1 / loss                                          # relative errors ~ errors in log L
    a1 = np.exp(-p * (x - x.min())) * w                   # (m, k), scaled so max(basis) = 1
    g11, g12, g22 = (a1 * a1).sum(1), (a1 * w).sum(1), (w * w).sum()
    b1, b2 = a1.sum(1), w.sum()
    det = g11 * g22 - g12 ** 2
    c = (b1 * g22 - b2 * g12) / det                       # (m,)
    delta = (g11 * b2 - g12 * b1) / det
    no_floor = (delta < 0) | (c <= 0)                     # delta must be >= 0: refit without it
    c = np.where(no_floor, b1 / g11, c)
    delta = np.where(no_floor, 0.0, delta)
    sse = ((a1 * c[:, None] + w * delta[:, None] - 1) ** 2).sum(1)
    log_k = np.log(np.maximum(c, 1e-300)) / p[:, 0] + x.min()   # c exp(-p (x - x_min)) = exp(p (log K - x))
    return log_k, delta, sse


def _fit_one_variable(x, loss, huber_scale):
    grid = np.geomspace(0.02, EXPONENT_BOUNDS[1], 120)
    i = int(np.argmin(_profile(grid, x, loss)[2]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = minimize_scalar(lambda p: _profile(p, x, loss)[2][0], bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-10})
    log_k, delta, _ = _profile(best.x, x, loss)
    theta, _ = polish("one-variable", np.array([log_k[0], best.x, delta[0]]), x, loss, huber_scale)
    return theta


def _joint_starts(x, loss):
    log_n_min, log_d_min = x[:, 0].min(), x[:, 1].min()
    for alpha, beta, da, db in product((0.3, 0.7), (0.5, 1.0, 2.0), (-4.0, 0.0), (-3.0, 0.0)):
        yield np.array([log_n_min + da, log_d_min + db, alpha, beta, 0.5 * loss.min()])


def _additive_starts(x, loss):
    """A grid over the exponents and the floor E; each scale set so its term is half of
    what the floor leaves at the median size."""
    median_n, median_d = np.median(x[:, 0]), np.median(x[:, 1])
    for alpha, beta, floor in product((0.1, 0.3, 0.6, 1.0), (0.1, 0.3, 0.6, 1.0), (0.0, 0.5, 0.9)):
        e = floor * loss.min()
        half = np.log(max(0.5 * (np.median(loss) - e), 1e-3 * loss.min()))
        yield np.array([half + alpha * median_n, half + beta * median_d, alpha, beta, e])


def _fit_multistart(kind, starts, x, loss, huber_scale):
    """Every start solved at once by `batched_huber_lm`, the best finished by `polish`."""
    starts = np.array(list(starts))
    ones = np.ones((len(starts), len(loss)))
    solved = batched_huber_lm(kind, starts, x, loss, ones, huber_scale)
    costs = huber_cost(residuals_and_jacobian(kind, solved, x, np.log(loss))[0], ones, huber_scale)
    return polish(kind, solved[int(np.nanargmin(costs))], x, loss, huber_scale)[0]


def fit_theta(kind, x, loss, huber_scale):
    if kind == "joint":
        return _fit_multistart(kind, _joint_starts(x, loss), x, loss, huber_scale)
    if kind == "additive":
        return _fit_multistart(kind, _additive_starts(x, loss), x, loss, huber_scale)
    return _fit_one_variable(x, loss, huber_scale)


# --- bootstrap refits, all at once ---------------------------------------------------

def refit_resamples(kind, theta, x, loss, weights, huber_scale, report=None) -> np.ndarray:
    """Internal theta (B, P) of the law refitted under each row of `weights` (B, k):
    joint and additive refits start from `theta`, the full-data optimum (no grid of
    starts: see engine.laws._bootstrap for what that means for the intervals);
    one-variable refits from each weighting's best exponent on the profile grid, a
    search over every exponent as the single fit makes. All are solved together by
    `batched_huber_lm`; `report(converged)` as it goes."""
    starts = (np.broadcast_to(theta, (len(weights), len(theta))) if kind in TWO_SIZE_KINDS
              else _profile_starts(x, loss, weights))
    return batched_huber_lm(kind, starts, x, loss, weights, huber_scale, report)


def _profile_starts(x, loss, weights) -> np.ndarray:
    """Starting theta (B, 3) of one-variable refits: each resample's best exponent on
    the profile grid, with its exactly solved log K and delta."""
    grid = np.geomspace(0.02, EXPONENT_BOUNDS[1], 120)
    chunk = max(1, PROFILE_CELLS // (len(grid) * len(loss)))                   # resamples per (chunk, m, k) block
    starts = []
    for first in range(0, len(weights), chunk):
        log_k, delta, sse = _profile_weighted(grid, x, loss, weights[first:first + chunk])  # each (chunk, m)
        best = np.argmin(sse, axis=1)
        rows = np.arange(len(best))
        starts.append(np.column_stack([log_k[rows, best], grid[best], delta[rows, best]]))
    return np.concatenate(starts)


PROFILE_CELLS = 2_000_000   # floats per (resamples, exponents, points) block of the profile grid: ~16 MB


def _profile_weighted(exponents, x, loss, weights):
    """`_profile` for many weightings of the same points at once: (m,) exponents,
    (B, k) weights -> log K, delta, weighted SSE, each (B, m)."""
    p = np.atleast_1d(exponents)[None, :, None]                                 # (1, m, 1)
    w = (1 / loss)[None, None, :]                                               # (1, 1, k)
    counts = weights[:, None, :]                                                # (B, 1, k)
    a1 = np.exp(-p * (x - x.min())) * w                                         # (1, m, k)
    g11, g12 = (counts * a1 * a1).sum(-1), (counts * a1 * w).sum(-1)            # (B, m)
    g22 = (counts * w * w).sum(-1)                                              # (B, 1)
    b1, b2 = (counts * a1).sum(-1), (counts * w).sum(-1)
    det = g11 * g22 - g12 ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (b1 * g22 - b2 * g12) / det
        delta = (g11 * b2 - g12 * b1) / det
    no_floor = ~(delta >= 0) | ~(c > 0)                                         # delta must be >= 0: refit without it
    c = np.where(no_floor, b1 / g11, c)
    delta = np.where(no_floor, 0.0, delta)
    sse = (counts * (a1 * c[..., None] + w * delta[..., None] - 1) ** 2).sum(-1)
    log_k = np.log(np.maximum(c, 1e-300)) / p[..., 0] + x.min()
    return log_k, delta, sse


# --- batched Levenberg-Marquardt with a Huber loss ---------------------------------

LM_TOLERANCE = 1e-12      # relative change of cost or theta at which a refit has converged (scipy's ftol/xtol)


LM_MAX_ITERATIONS = 3000  # then the few refits still creeping along a flat valley finish with scipy (`polish`)
LEFTOVER_MAX_NFEV = 200   # scipy's budget for such a refit: along the valley no parameter is determined by
                          # the points (log K ~ 300-800, p ~ 0.002 on a flat ICT loss); on the flat points of
                          # tests/test_laws.py the intervals to D = 1e6 agree with a 2000-evaluation budget to
                          # 4 decimals, in 4.5 s instead of 36 s for a 200-draw bootstrap


def batched_huber_lm(kind, theta0, x, loss, weights, huber_scale, report=None) -> np.ndarray:
    """Minimise sum_k w_bk huber(r_k(theta_b)), r = log L_pred - log L, for every row b
    at once: what `polish` minimises with scipy, one resample at a time.

    Each iteration solves the (B, P, P) damped normal equations of iteratively
    reweighted Gauss-Newton (Huber weights: 1 inside the scale, scale/|r| beyond),
    damped by Marquardt's diagonal (scale-free, like scipy's x_scale='jac'), within
    the same box bounds: a parameter at a bound whose gradient points outward is held
    there. A step is kept only if it lowers the cost; a row stops when the cost or
    theta change by less than LM_TOLERANCE relatively, or when no step lowers it. Rows
    still running after LM_MAX_ITERATIONS are finished one by one by `polish`, each
    within LEFTOVER_MAX_NFEV evaluations."""
    lower, upper = _bounds(kind, loss)
    theta = np.clip(np.array(theta0, dtype=float), lower + 1e-12, upper - 1e-12)    # (B, P)
    log_loss = np.log(loss)
    residuals, jac = residuals_and_jacobian(kind, theta, x, log_loss)          # (B, k), (B, k, P)
    cost = huber_cost(residuals, weights, huber_scale)                         # (B,)
    damping = np.full(len(theta), 1e-3)
    running = np.isfinite(cost)
    eye = np.eye(theta.shape[1])
    for _ in range(LM_MAX_ITERATIONS):
        rows = np.flatnonzero(running)
        if rows.size == 0:
            break
        r, j, w, t = residuals[rows], jac[rows], weights[rows], theta[rows]
        irls = w * np.minimum(1.0, huber_scale / np.maximum(np.abs(r), 1e-300))  # (b, k)
        j_t = j.transpose(0, 2, 1)                                              # (b, P, k)
        grad = (j_t @ (irls * r)[..., None])[..., 0]                            # (b, P)
        hess = (j_t * irls[:, None, :]) @ j                                     # (b, P, P)
        free = ~(((t <= lower) & (grad > 0)) | ((t >= upper) & (grad < 0)))     # held: pressed against a bound
        hess = hess * free[:, :, None] * free[:, None, :] + eye * ~free[:, :, None]
        diagonal = np.diagonal(hess, axis1=1, axis2=2)                          # (b, P)
        diagonal = np.maximum(diagonal, 1e-12 * diagonal.sum(axis=1, keepdims=True) + 1e-300)
        step = -np.linalg.solve(hess + damping[rows, None, None] * eye * diagonal[:, :, None],
                                (grad * free)[..., None])[..., 0] * free
        trial = np.clip(t + step, lower, upper)
        r_new, j_new = residuals_and_jacobian(kind, trial, x, log_loss)
        cost_new = huber_cost(r_new, w, huber_scale)
        better = np.isfinite(cost_new) & (cost_new < cost[rows])
        kept, refused = rows[better], rows[~better]
        converged = ((cost[kept] - cost_new[better]) <= LM_TOLERANCE * cost[kept]) | (
            np.abs(trial[better] - t[better]).max(axis=1)
            <= LM_TOLERANCE * (LM_TOLERANCE + np.abs(t[better]).max(axis=1)))
        theta[kept], residuals[kept], jac[kept], cost[kept] = trial[better], r_new[better], j_new[better], cost_new[better]
        damping[kept] = np.maximum(damping[kept] * 0.3, 1e-12)
        damping[refused] *= 10.0
        running[kept[converged]] = False
        running[refused[damping[refused] > 1e16]] = False                       # no step lowers the cost: a minimum
        if report is not None:
            report(int((~running).sum()))
    for row in np.flatnonzero(running):
        repeats = weights[row].astype(int)
        theta[row], _ = polish(kind, theta[row], np.repeat(x, repeats, axis=0), np.repeat(loss, repeats),
                                huber_scale, max_nfev=LEFTOVER_MAX_NFEV)
    return theta


def huber_cost(residuals, weights, scale) -> np.ndarray:
    """sum_k w_k rho(r_k), rho the Huber loss (quadratic within `scale`, linear beyond); (B,)."""
    absolute = np.abs(residuals)
    rho = np.where(absolute <= scale, 0.5 * residuals ** 2, scale * absolute - 0.5 * scale ** 2)
    return (weights * rho).sum(axis=1)


def residuals_and_jacobian(kind, theta, x, log_loss):
    """Residuals (B, k) and Jacobian (B, k, P) in log L of every row of theta (B, P)."""
    cols = [theta[:, i, None] for i in range(theta.shape[1])]                   # each (B, 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # handled below: non-finite rows
        if kind == "joint":
            log_a, log_b, alpha, beta, delta = cols
            u = (alpha / beta) * (log_a - x[:, 0])                              # (B, k) log (A/N)^(alpha/beta)
            v = log_b - x[:, 1]                                                 # log B/D
            s = np.logaddexp(u, v)
            term = np.exp(beta * s)
            pred = term + delta
            w_u = np.exp(u - s)
            jac = np.stack([term * alpha * w_u, term * beta * (1 - w_u), term * w_u * (log_a - x[:, 0]),
                            term * (s - w_u * u), np.ones_like(term)], axis=-1) / pred[..., None]
        elif kind == "additive":
            log_a, log_b, alpha, beta, floor = cols
            model_term, data_term = np.exp(log_a - alpha * x[:, 0]), np.exp(log_b - beta * x[:, 1])  # (B, k)
            pred = model_term + data_term + floor
            jac = np.stack([model_term, data_term, -x[:, 0] * model_term, -x[:, 1] * data_term,
                            np.ones_like(pred)], axis=-1) / pred[..., None]
        else:
            log_k, p, delta = cols
            term = np.exp(p * (log_k - x))
            pred = term + delta
            jac = np.stack([p * term, (log_k - x) * term, np.ones_like(term)], axis=-1) / pred[..., None]
        residuals = np.log(pred) - log_loss
    residuals[~np.isfinite(residuals)] = np.inf
    jac[~np.isfinite(jac)] = 0.0
    return residuals, jac
