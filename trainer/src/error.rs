use std::path::PathBuf;

/// Everything that can go wrong in the trainer. Bad files and bad samples are errors, never panics.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable GGUF file: {reason}")]
    NotGguf { path: PathBuf, reason: String },
    #[error("unsupported architecture {0:?} (only \"llama\" is supported)")]
    UnsupportedArchitecture(String),
    #[error("missing or invalid metadata key {0}")]
    MissingMetadata(String),
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name}: shape {got:?}, expected {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("adapter: {0}")]
    BadAdapter(String),
    #[error("invalid sample: {0}")]
    InvalidSample(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("thread pool: {0}")]
    ThreadPool(String),
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}
