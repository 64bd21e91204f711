//! Summaries for TensorBoard's HParams dashboard.
//!
//! The hparams plugin reads only `SummaryMetadata` (no tensor values): an
//! `Experiment` under tag `_hparams_/experiment` listing hyperparameters and
//! metric tags, and a `SessionStartInfo` under `_hparams_/session_start_info`
//! holding this run's values. Metrics themselves are ordinary scalars logged
//! with [`crate::SummaryWriter::add_scalar`] under the listed tags, in the
//! same run directory (metric `group` is left empty). This is the same layout
//! `tensorboard.plugins.hparams.summary_v2` produces.

use std::collections::BTreeMap;

use prost::Message;

use crate::proto::hparams::{
    plugin_data::Data, proto_value, Experiment, HParamDataType, HParamInfo, HParamsPluginData,
    MetricInfo, MetricName, ProtoValue, SessionStartInfo,
};
use crate::proto::{summary, summary_metadata::PluginData, SummaryMetadata};

/// Plugin name the HParams dashboard registers under.
pub const PLUGIN_NAME: &str = "hparams";
/// Tag of the experiment description.
pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
/// Tag of a session's hyperparameter values.
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";

/// A hyperparameter value; TensorBoard supports exactly these three kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum HParamValue {
    /// Boolean flag.
    Bool(bool),
    /// Any number (integers are stored as f64, as TensorBoard does).
    Number(f64),
    /// Free-form string.
    String(String),
}

impl HParamValue {
    fn data_type(&self) -> HParamDataType {
        match self {
            HParamValue::Bool(_) => HParamDataType::Bool,
            HParamValue::Number(_) => HParamDataType::Float64,
            HParamValue::String(_) => HParamDataType::String,
        }
    }

    fn to_proto(&self) -> ProtoValue {
        let kind = match self {
            HParamValue::Bool(b) => proto_value::Kind::Bool(*b),
            HParamValue::Number(x) => proto_value::Kind::Number(*x),
            HParamValue::String(s) => proto_value::Kind::String(s.clone()),
        };
        ProtoValue { kind: Some(kind) }
    }
}

impl From<bool> for HParamValue {
    fn from(v: bool) -> Self {
        HParamValue::Bool(v)
    }
}

impl From<f64> for HParamValue {
    fn from(v: f64) -> Self {
        HParamValue::Number(v)
    }
}

impl From<f32> for HParamValue {
    fn from(v: f32) -> Self {
        HParamValue::Number(f64::from(v))
    }
}

impl From<i64> for HParamValue {
    fn from(v: i64) -> Self {
        // Precision loss above 2^53 matches TensorBoard's own float64 storage.
        HParamValue::Number(v as f64)
    }
}

impl From<i32> for HParamValue {
    fn from(v: i32) -> Self {
        HParamValue::Number(f64::from(v))
    }
}

impl From<usize> for HParamValue {
    fn from(v: usize) -> Self {
        HParamValue::Number(v as f64)
    }
}

impl From<&str> for HParamValue {
    fn from(v: &str) -> Self {
        HParamValue::String(v.to_owned())
    }
}

impl From<String> for HParamValue {
    fn from(v: String) -> Self {
        HParamValue::String(v)
    }
}

fn metadata_value(tag: &str, data: Data) -> summary::Value {
    let content = HParamsPluginData {
        version: 0,
        data: Some(data),
    }
    .encode_to_vec();
    summary::Value {
        tag: tag.to_owned(),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: PLUGIN_NAME.to_owned(),
                content,
            }),
            ..Default::default()
        }),
        kind: None,
    }
}

/// Builds the experiment and session-start summary values.
pub(crate) fn summary_values(
    hparams: &BTreeMap<String, HParamValue>,
    metrics: &[&str],
    now_secs: f64,
) -> Vec<summary::Value> {
    let experiment = Experiment {
        time_created_secs: now_secs,
        hparam_infos: hparams
            .iter()
            .map(|(name, v)| HParamInfo {
                name: name.clone(),
                r#type: v.data_type() as i32,
                ..Default::default()
            })
            .collect(),
        metric_infos: metrics
            .iter()
            .map(|tag| MetricInfo {
                name: Some(MetricName {
                    group: String::new(),
                    tag: (*tag).to_owned(),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let session = SessionStartInfo {
        hparams: hparams
            .iter()
            .map(|(k, v)| (k.clone(), v.to_proto()))
            .collect(),
        start_time_secs: now_secs,
        ..Default::default()
    };
    vec![
        metadata_value(EXPERIMENT_TAG, Data::Experiment(experiment)),
        metadata_value(SESSION_START_INFO_TAG, Data::SessionStartInfo(session)),
    ]
}
