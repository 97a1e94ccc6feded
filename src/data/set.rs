//! A data set as training reads it, whichever source it came from: both splits, what
//! a model must know of it (its description), and where it came from.

use std::path::PathBuf;

use super::description::DataDescription;
use super::fashion_mnist::FashionMnist;
use super::split::Split;

#[derive(Clone, Debug)]
pub struct DataSet {
    pub train: Split,
    pub test: Split,
    pub description: DataDescription,
    /// The directory it was read from, made absolute.
    pub source: PathBuf,
    /// How that directory was chosen or read (e.g. "$FASHION_MNIST_DIR", "--data").
    pub found_by: String,
}

impl From<FashionMnist> for DataSet {
    fn from(data: FashionMnist) -> DataSet {
        DataSet {
            train: data.train,
            test: data.test,
            description: DataDescription::fashion_mnist(),
            source: data.source,
            found_by: data.found_by.to_string(),
        }
    }
}
