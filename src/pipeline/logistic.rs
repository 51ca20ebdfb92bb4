//! L2-regularised, sample-weighted logistic regression fitted by Newton's method (IRLS).
//!
//! Objective (the same as scikit-learn's `LogisticRegression(C=c)`, intercept unpenalised):
//!
//! ```text
//! f(β) = c · Σᵢ wᵢ · [softplus(ηᵢ) − yᵢ·ηᵢ] + ½ · Σⱼ≥₁ βⱼ²,   η = β₀ + x·β
//! ```
//!
//! Each step solves the Newton system with a Cholesky factorisation (from `linfa-linalg`) and
//! backtracks until the objective decreases, so the fit is deterministic and converges for any
//! positive `c`. The design is small (tens to a few hundred columns), so the dense Hessian is cheap.

use linfa_linalg::cholesky::SolveC;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use thiserror::Error;

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub struct SolverSettings {
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f64,
    /// Newton iterations allowed.
    pub max_iterations: usize,
    /// Stop when max |gradient| / Σw falls below this.
    pub tolerance: f64,
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct LogisticFit {
    /// Intercept β₀.
    pub intercept: f64,
    /// One coefficient per column of X.
    pub coefficients: Vec<f64>,
    /// Newton iterations run.
    pub iterations: usize,
    /// Whether the tolerance was reached.
    pub converged: bool,
    /// Final max |gradient| / Σw.
    pub gradient_norm: f64,
}

/// Solver failures.
#[derive(Debug, Error)]
pub enum SolverError {
    /// Inputs of different lengths, or no rows.
    #[error("bad solver input: {0}")]
    Input(String),
    /// The Newton system could not be solved (should not happen with c > 0).
    #[error("Newton system is not positive definite: {0}")]
    NotPositiveDefinite(String),
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Fits the model on design matrix `x` (n × d, no intercept column), labels in {0, 1} and weights.
pub fn fit(x: ArrayView2<f64>, y: &[f64], w: &[f64], s: SolverSettings) -> Result<LogisticFit, SolverError> {
    let (n, d) = x.dim();
    if n == 0 || y.len() != n || w.len() != n {
        return Err(SolverError::Input(format!("{n} rows, {} labels, {} weights", y.len(), w.len())));
    }
    if !(s.c > 0.0) {
        return Err(SolverError::Input(format!("C must be positive, got {}", s.c)));
    }
    let lambda = 1.0 / s.c;
    // Work on the C-scaled objective divided through: Σ wᵢ lossᵢ + (λ/2)‖β‖², λ = 1/C.
    let mut xa = Array2::<f64>::ones((n, d + 1));
    xa.slice_mut(ndarray::s![.., 1..]).assign(&x);
    let y = Array1::from(y.to_vec());
    let w = Array1::from(w.to_vec());
    let total_weight = w.sum();
    let mut beta = Array1::<f64>::zeros(d + 1);

    let objective = |beta: &Array1<f64>| -> f64 {
        let eta = xa.dot(beta);
        let loss: f64 = eta.iter().zip(&y).zip(&w).map(|((&e, &yi), &wi)| wi * (softplus(e) - yi * e)).sum();
        loss + 0.5 * lambda * beta.iter().skip(1).map(|b| b * b).sum::<f64>()
    };

    let mut f = objective(&beta);
    let mut iterations = 0;
    let mut grad_norm = f64::INFINITY;
    let mut converged = false;
    while iterations < s.max_iterations {
        let eta = xa.dot(&beta);
        let p = eta.mapv(sigmoid);
        let resid = (&p - &y) * &w;
        let mut grad = xa.t().dot(&resid);
        for j in 1..=d {
            grad[j] += lambda * beta[j];
        }
        grad_norm = grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) / total_weight;
        if grad_norm < s.tolerance {
            converged = true;
            break;
        }
        // Hessian Xᵀ diag(w·p·(1−p)) X + λ·I (intercept unpenalised).
        let h_weights = (&p * &(1.0 - &p) * &w).mapv(f64::sqrt);
        let xs = &xa * &h_weights.view().insert_axis(Axis(1));
        let mut hessian = xs.t().dot(&xs);
        for j in 1..=d {
            hessian[[j, j]] += lambda;
        }
        hessian[[0, 0]] += 1e-12 * total_weight;
        let rhs = grad.view().insert_axis(Axis(1)).to_owned();
        let step = hessian
            .solvec(&rhs)
            .map_err(|e| SolverError::NotPositiveDefinite(e.to_string()))?
            .index_axis_move(Axis(1), 0);
        let slope: f64 = grad.dot(&step);
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            let candidate = &beta - &(&step * t);
            let fc = objective(&candidate);
            if fc <= f - 1e-4 * t * slope {
                beta = candidate;
                f = fc;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        iterations += 1;
        if !accepted {
            // No decrease possible at machine precision: we are at the optimum.
            converged = grad_norm < s.tolerance.sqrt();
            break;
        }
    }
    Ok(LogisticFit { intercept: beta[0], coefficients: beta.iter().skip(1).copied().collect(), iterations, converged, gradient_norm: grad_norm })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    const SETTINGS: SolverSettings = SolverSettings { c: 1.0, max_iterations: 100, tolerance: 1e-10 };

    #[test]
    fn gradient_is_zero_at_the_solution() {
        // Overlapping classes so the unregularised optimum is finite too.
        let x = array![[0.0, 1.0], [1.0, 0.5], [2.0, -1.0], [3.0, 0.0], [1.5, 2.0], [2.5, 1.0], [0.5, -0.5], [1.0, 1.0]];
        let y = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0];
        let w = [1.0, 2.0, 1.0, 1.0, 0.5, 1.0, 3.0, 1.0];
        let fit = fit(x.view(), &y, &w, SETTINGS).unwrap();
        assert!(fit.converged);
        // Recompute the gradient independently.
        let lambda = 1.0 / SETTINGS.c;
        let mut g0 = 0.0;
        let mut g = [0.0; 2];
        for i in 0..8 {
            let eta = fit.intercept + fit.coefficients[0] * x[[i, 0]] + fit.coefficients[1] * x[[i, 1]];
            let r = w[i] * (sigmoid(eta) - y[i]);
            g0 += r;
            g[0] += r * x[[i, 0]];
            g[1] += r * x[[i, 1]];
        }
        assert!(g0.abs() < 1e-8, "intercept gradient {g0}");
        for j in 0..2 {
            assert!((g[j] + lambda * fit.coefficients[j]).abs() < 1e-8, "gradient {j}");
        }
    }

    #[test]
    fn separable_data_stays_finite_because_of_l2() {
        let x = array![[-2.0], [-1.0], [1.0], [2.0]];
        let fit = fit(x.view(), &[0.0, 0.0, 1.0, 1.0], &[1.0; 4], SETTINGS).unwrap();
        assert!(fit.converged && fit.coefficients[0].is_finite() && fit.coefficients[0] > 0.0);
        // Stronger regularisation shrinks the coefficient.
        let strong = super::fit(x.view(), &[0.0, 0.0, 1.0, 1.0], &[1.0; 4], SolverSettings { c: 0.01, ..SETTINGS }).unwrap();
        assert!(strong.coefficients[0] < fit.coefficients[0]);
    }

    #[test]
    fn rejects_bad_input() {
        let x = array![[1.0]];
        assert!(fit(x.view(), &[1.0, 0.0], &[1.0], SETTINGS).is_err());
        assert!(fit(x.view(), &[1.0], &[1.0], SolverSettings { c: 0.0, ..SETTINGS }).is_err());
    }
}
