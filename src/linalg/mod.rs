//! The public operations, one module per family. Each validates its inputs, records its
//! dispatches into one command recorder and submits once.

pub mod batched;
pub mod blas;
pub mod householder;
pub mod lstsq;
pub mod qr;
pub mod trsm;

use crate::error::{Error, Result, Shape};

/// Rejects an empty input with an error naming the operation and the argument.
pub(crate) fn non_empty(op: &'static str, name: &'static str, shape: Shape) -> Result<()> {
    if shape.batch == 0 || shape.rows == 0 || shape.cols == 0 {
        return Err(Error::Empty { op, name, shape });
    }
    Ok(())
}
