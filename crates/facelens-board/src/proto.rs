//! Hand-written `prost` definitions of the TensorBoard protobuf messages we emit.
//!
//! Only the fields facelens writes are declared; protobuf readers skip the rest.
//! Field numbers follow `tensorboard/compat/proto/{event,summary,histogram,
//! tensor,tensor_shape}.proto` and `tensorboard/plugins/hparams/{api,
//! plugin_data}.proto`. Writing them by hand avoids a `protoc`/`build.rs`
//! dependency for a dozen small messages.
//!
//! Proto3 `oneof` members are modelled as Rust enums on purpose: a plain
//! proto3 scalar equal to its default (e.g. `simple_value = 0.0`) is not
//! serialized at all, and TensorBoard would then silently drop a scalar whose
//! value is exactly zero. Inside a `oneof` the field is always present.

/// `tensorboard.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// Payload (`oneof what`).
    #[prost(oneof = "event::What", tags = "3, 5")]
    pub what: Option<event::What>,
}

/// Nested types of [`Event`].
pub mod event {
    /// `oneof what` of `tensorboard.Event`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// File header; must be `"brain.Event:2"` in the first record.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// A set of summary values.
        #[prost(message, tag = "5")]
        Summary(super::Summary),
    }
}

/// `tensorboard.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// Values in this summary.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<summary::Value>,
}

/// Nested types of [`Summary`].
pub mod summary {
    /// `tensorboard.Summary.Image`: an encoded (here: PNG) image.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Image {
        /// Height in pixels.
        #[prost(int32, tag = "1")]
        pub height: i32,
        /// Width in pixels.
        #[prost(int32, tag = "2")]
        pub width: i32,
        /// 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
        #[prost(int32, tag = "3")]
        pub colorspace: i32,
        /// Encoded image bytes.
        #[prost(bytes = "vec", tag = "4")]
        pub encoded_image_string: Vec<u8>,
    }

    /// `tensorboard.Summary.Value`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// Series name.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Plugin routing information (only needed on a tag's first value).
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<super::SummaryMetadata>,
        /// The value itself (`oneof value`).
        #[prost(oneof = "value::Kind", tags = "2, 4, 5, 8")]
        pub kind: Option<value::Kind>,
    }

    /// Nested types of [`Value`].
    pub mod value {
        /// `oneof value` of `tensorboard.Summary.Value`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Kind {
            /// Scalar (stored as `float`, i.e. f32, by the format).
            #[prost(float, tag = "2")]
            SimpleValue(f32),
            /// Encoded image.
            #[prost(message, tag = "4")]
            Image(super::Image),
            /// Histogram.
            #[prost(message, tag = "5")]
            Histo(super::super::HistogramProto),
            /// Generic tensor (text plugin, ...).
            #[prost(message, tag = "8")]
            Tensor(super::super::TensorProto),
        }
    }
}

/// `tensorboard.HistogramProto`.
///
/// Bucket `i` covers `(bucket_limit[i-1], bucket_limit[i]]`; TensorBoard draws
/// the first bucket from `min` and the last one up to `max`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HistogramProto {
    /// Smallest value.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// Largest value.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// Number of values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Sum of values.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// Sum of squared values.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// Right edges of the buckets.
    #[prost(double, repeated, packed = "true", tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// Counts per bucket.
    #[prost(double, repeated, packed = "true", tag = "7")]
    pub bucket: Vec<f64>,
}

/// `tensorboard.SummaryMetadata`: tells TensorBoard which plugin owns a tag.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// Owning plugin and its private payload.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<summary_metadata::PluginData>,
    /// Display name in the UI.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Markdown description.
    #[prost(string, tag = "3")]
    pub summary_description: String,
    /// [`DataClass`] of the series.
    #[prost(enumeration = "DataClass", tag = "4")]
    pub data_class: i32,
}

/// Nested types of [`SummaryMetadata`].
pub mod summary_metadata {
    /// `tensorboard.SummaryMetadata.PluginData`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        /// E.g. `"text"` or `"hparams"`.
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        /// Plugin-specific serialized protobuf.
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }
}

/// `tensorboard.DataClass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataClass {
    /// Legacy data.
    Unknown = 0,
    /// Rank-0 float32 tensors.
    Scalar = 1,
    /// Arbitrary small tensors.
    Tensor = 2,
    /// Rank-1 byte-string tensors.
    BlobSequence = 3,
}

/// `tensorboard.DataType` (subset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// `DT_INVALID`.
    DtInvalid = 0,
    /// `DT_FLOAT`.
    DtFloat = 1,
    /// `DT_DOUBLE`.
    DtDouble = 2,
    /// `DT_STRING`.
    DtString = 7,
}

/// `tensorboard.TensorProto` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Element type, a [`DataType`].
    #[prost(enumeration = "DataType", tag = "1")]
    pub dtype: i32,
    /// Shape; no dims means a scalar.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// Elements of a `DT_STRING` tensor, row major.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// `tensorboard.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions, outermost first.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<tensor_shape_proto::Dim>,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// `tensorboard.TensorShapeProto.Dim`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        /// Size of the dimension.
        #[prost(int64, tag = "1")]
        pub size: i64,
        /// Optional name.
        #[prost(string, tag = "2")]
        pub name: String,
    }
}

/// Messages of the hparams plugin (`tensorboard.hparams` package).
pub mod hparams {
    use std::collections::BTreeMap;

    /// `HParamsPluginData`: the `content` of an hparams `SummaryMetadata`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamsPluginData {
        /// Schema version; TensorBoard expects 0.
        #[prost(int32, tag = "1")]
        pub version: i32,
        /// Payload (`oneof data`).
        #[prost(oneof = "plugin_data::Data", tags = "2, 3, 4")]
        pub data: Option<plugin_data::Data>,
    }

    /// Nested types of [`HParamsPluginData`].
    pub mod plugin_data {
        /// `oneof data` of `HParamsPluginData`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Data {
            /// Experiment-wide description of hparams and metrics.
            #[prost(message, tag = "2")]
            Experiment(super::Experiment),
            /// Hparam values of one session (= run).
            #[prost(message, tag = "3")]
            SessionStartInfo(super::SessionStartInfo),
            /// End status of one session.
            #[prost(message, tag = "4")]
            SessionEndInfo(super::SessionEndInfo),
        }
    }

    /// `Experiment`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Experiment {
        /// Free-form description.
        #[prost(string, tag = "1")]
        pub description: String,
        /// Creation time, seconds since the epoch.
        #[prost(double, tag = "3")]
        pub time_created_secs: f64,
        /// One entry per hyperparameter.
        #[prost(message, repeated, tag = "4")]
        pub hparam_infos: Vec<HParamInfo>,
        /// One entry per metric.
        #[prost(message, repeated, tag = "5")]
        pub metric_infos: Vec<MetricInfo>,
        /// Experiment name.
        #[prost(string, tag = "6")]
        pub name: String,
    }

    /// `HParamInfo` (without the optional domain).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HParamInfo {
        /// Hyperparameter id.
        #[prost(string, tag = "1")]
        pub name: String,
        /// UI label.
        #[prost(string, tag = "2")]
        pub display_name: String,
        /// Markdown description.
        #[prost(string, tag = "3")]
        pub description: String,
        /// An [`HParamDataType`].
        #[prost(enumeration = "HParamDataType", tag = "4")]
        pub r#type: i32,
    }

    /// `tensorboard.hparams.DataType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum HParamDataType {
        /// `DATA_TYPE_UNSET`.
        Unset = 0,
        /// `DATA_TYPE_STRING`.
        String = 1,
        /// `DATA_TYPE_BOOL`.
        Bool = 2,
        /// `DATA_TYPE_FLOAT64`.
        Float64 = 3,
    }

    /// `MetricName`: a metric is the scalar series `tag` in run `<session><group>`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricName {
        /// Run suffix (empty: the session's own run).
        #[prost(string, tag = "1")]
        pub group: String,
        /// Scalar tag.
        #[prost(string, tag = "2")]
        pub tag: String,
    }

    /// `MetricInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricInfo {
        /// Which scalar series.
        #[prost(message, optional, tag = "1")]
        pub name: Option<MetricName>,
        /// UI label.
        #[prost(string, tag = "3")]
        pub display_name: String,
        /// Markdown description.
        #[prost(string, tag = "4")]
        pub description: String,
    }

    /// `SessionStartInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionStartInfo {
        /// Hyperparameter values of this session.
        #[prost(btree_map = "string, message", tag = "1")]
        pub hparams: BTreeMap<String, ProtoValue>,
        /// Where checkpoints live.
        #[prost(string, tag = "2")]
        pub model_uri: String,
        /// Monitoring URL.
        #[prost(string, tag = "3")]
        pub monitor_url: String,
        /// Session group (empty: the session is its own group).
        #[prost(string, tag = "4")]
        pub group_name: String,
        /// Start time, seconds since the epoch.
        #[prost(double, tag = "5")]
        pub start_time_secs: f64,
    }

    /// `SessionEndInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SessionEndInfo {
        /// `Status`: 0 unknown, 1 success, 2 failure, 3 running.
        #[prost(int32, tag = "1")]
        pub status: i32,
        /// End time, seconds since the epoch.
        #[prost(double, tag = "2")]
        pub end_time_secs: f64,
    }

    /// `google.protobuf.Value` (scalar kinds only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoValue {
        /// `oneof kind`.
        #[prost(oneof = "proto_value::Kind", tags = "2, 3, 4")]
        pub kind: Option<proto_value::Kind>,
    }

    /// Nested types of [`ProtoValue`].
    pub mod proto_value {
        /// `oneof kind` of `google.protobuf.Value` (subset).
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Kind {
            /// `number_value`.
            #[prost(double, tag = "2")]
            Number(f64),
            /// `string_value`.
            #[prost(string, tag = "3")]
            String(String),
            /// `bool_value`.
            #[prost(bool, tag = "4")]
            Bool(bool),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn zero_scalar_is_still_encoded() {
        let v = summary::Value {
            tag: "t".into(),
            metadata: None,
            kind: Some(summary::value::Kind::SimpleValue(0.0)),
        };
        let bytes = v.encode_to_vec();
        // tag field (0x0a len 1 't') followed by field 2, wire type 5 (fixed32): key 0x15.
        assert_eq!(bytes, vec![0x0a, 0x01, b't', 0x15, 0, 0, 0, 0]);
    }

    #[test]
    fn file_version_event_wire_format() {
        let e = Event {
            wall_time: 0.0,
            step: 0,
            what: Some(event::What::FileVersion("brain.Event:2".into())),
        };
        let bytes = e.encode_to_vec();
        assert_eq!(bytes[0], 0x1a); // field 3, length-delimited
        assert_eq!(bytes[1] as usize, "brain.Event:2".len());
        assert_eq!(Event::decode(bytes.as_slice()).expect("decodes"), e);
    }

    #[test]
    fn histogram_buckets_are_packed() {
        let h = HistogramProto {
            bucket_limit: vec![1.0, 2.0],
            bucket: vec![3.0, 4.0],
            ..Default::default()
        };
        let bytes = h.encode_to_vec();
        // field 6, wire type 2 (packed) = 0x32, 16 bytes; field 7 = 0x3a.
        assert_eq!(bytes[0], 0x32);
        assert_eq!(bytes[1], 16);
        assert_eq!(bytes[18], 0x3a);
    }
}
