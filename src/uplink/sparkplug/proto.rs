//! The Sparkplug B payload schema (Eclipse Sparkplug 3.0, `sparkplug_b.proto`, package
//! `org.eclipse.tahu.protobuf`, proto2) as prost-derive structs, written by hand from the
//! published schema and checked in so no `protoc` runs at build time. Field numbers, wire types
//! and `optional`/`repeated` match the schema exactly; the schema's `extensions N to max`
//! ranges have no prost counterpart and are skipped as unknown fields on decode. Plain data:
//! encoding and decoding are prost's; what the fields mean is `encode`/`decode`'s business.

/// The top-level message of every Sparkplug B MQTT payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Timestamp at message sending time (UTC ms).
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// Sequence number 0..=255.
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// `Payload.Template`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Template {
    #[prost(string, optional, tag = "1")]
    pub version: Option<String>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    #[prost(message, repeated, tag = "3")]
    pub parameters: Vec<template::Parameter>,
    #[prost(string, optional, tag = "4")]
    pub template_ref: Option<String>,
    #[prost(bool, optional, tag = "5")]
    pub is_definition: Option<bool>,
}

/// Nested messages of `Payload.Template`.
pub mod template {
    /// `Payload.Template.Parameter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Parameter {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(uint32, optional, tag = "2")]
        pub r#type: Option<u32>,
        #[prost(oneof = "parameter::Value", tags = "3, 4, 5, 6, 7, 8, 9")]
        pub value: Option<parameter::Value>,
    }

    /// Nested types of `Payload.Template.Parameter`.
    pub mod parameter {
        /// `Payload.Template.Parameter.ParameterValueExtension` (extensions only).
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ParameterValueExtension {}

        /// The `value` oneof.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(uint32, tag = "3")]
            IntValue(u32),
            #[prost(uint64, tag = "4")]
            LongValue(u64),
            #[prost(float, tag = "5")]
            FloatValue(f32),
            #[prost(double, tag = "6")]
            DoubleValue(f64),
            #[prost(bool, tag = "7")]
            BooleanValue(bool),
            #[prost(string, tag = "8")]
            StringValue(String),
            #[prost(message, tag = "9")]
            ExtensionValue(ParameterValueExtension),
        }
    }
}

/// `Payload.DataSet`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataSet {
    #[prost(uint64, optional, tag = "1")]
    pub num_of_columns: Option<u64>,
    #[prost(string, repeated, tag = "2")]
    pub columns: Vec<String>,
    #[prost(uint32, repeated, packed = "false", tag = "3")]
    pub types: Vec<u32>,
    #[prost(message, repeated, tag = "4")]
    pub rows: Vec<data_set::Row>,
}

/// Nested messages of `Payload.DataSet`.
pub mod data_set {
    /// `Payload.DataSet.DataSetValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DataSetValue {
        #[prost(oneof = "data_set_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub value: Option<data_set_value::Value>,
    }

    /// Nested types of `Payload.DataSet.DataSetValue`.
    pub mod data_set_value {
        /// `Payload.DataSet.DataSetValue.DataSetValueExtension` (extensions only).
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct DataSetValueExtension {}

        /// The `value` oneof.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(uint32, tag = "1")]
            IntValue(u32),
            #[prost(uint64, tag = "2")]
            LongValue(u64),
            #[prost(float, tag = "3")]
            FloatValue(f32),
            #[prost(double, tag = "4")]
            DoubleValue(f64),
            #[prost(bool, tag = "5")]
            BooleanValue(bool),
            #[prost(string, tag = "6")]
            StringValue(String),
            #[prost(message, tag = "7")]
            ExtensionValue(DataSetValueExtension),
        }
    }

    /// `Payload.DataSet.Row`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Row {
        #[prost(message, repeated, tag = "1")]
        pub elements: Vec<DataSetValue>,
    }
}

/// `Payload.PropertyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    #[prost(oneof = "property_value::Value", tags = "3, 4, 5, 6, 7, 8, 9, 10, 11")]
    pub value: Option<property_value::Value>,
}

/// Nested types of `Payload.PropertyValue`.
pub mod property_value {
    /// `Payload.PropertyValue.PropertyValueExtension` (extensions only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PropertyValueExtension {}

    /// The `value` oneof.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(uint32, tag = "3")]
        IntValue(u32),
        #[prost(uint64, tag = "4")]
        LongValue(u64),
        #[prost(float, tag = "5")]
        FloatValue(f32),
        #[prost(double, tag = "6")]
        DoubleValue(f64),
        #[prost(bool, tag = "7")]
        BooleanValue(bool),
        #[prost(string, tag = "8")]
        StringValue(String),
        #[prost(message, tag = "9")]
        PropertysetValue(super::PropertySet),
        /// List of property values.
        #[prost(message, tag = "10")]
        PropertysetsValue(super::PropertySetList),
        #[prost(message, tag = "11")]
        ExtensionValue(PropertyValueExtension),
    }
}

/// `Payload.PropertySet`: parallel lists of keys and values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySet {
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

/// `Payload.PropertySetList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySetList {
    #[prost(message, repeated, tag = "1")]
    pub propertyset: Vec<PropertySet>,
}

/// `Payload.MetaData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaData {
    #[prost(bool, optional, tag = "1")]
    pub is_multi_part: Option<bool>,
    #[prost(string, optional, tag = "2")]
    pub content_type: Option<String>,
    #[prost(uint64, optional, tag = "3")]
    pub size: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "5")]
    pub file_name: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub file_type: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub md5: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub description: Option<String>,
}

/// `Payload.Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Only on births (and in commands by name).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Acquisition time (UTC ms).
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(message, optional, tag = "8")]
    pub metadata: Option<MetaData>,
    #[prost(message, optional, tag = "9")]
    pub properties: Option<PropertySet>,
    #[prost(
        oneof = "metric::Value",
        tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19"
    )]
    pub value: Option<metric::Value>,
}

/// Nested types of `Payload.Metric`.
pub mod metric {
    /// `Payload.Metric.MetricValueExtension` (extensions only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricValueExtension {}

    /// The `value` oneof.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(uint32, tag = "10")]
        IntValue(u32),
        #[prost(uint64, tag = "11")]
        LongValue(u64),
        #[prost(float, tag = "12")]
        FloatValue(f32),
        #[prost(double, tag = "13")]
        DoubleValue(f64),
        #[prost(bool, tag = "14")]
        BooleanValue(bool),
        #[prost(string, tag = "15")]
        StringValue(String),
        /// Bytes, File.
        #[prost(bytes = "vec", tag = "16")]
        BytesValue(Vec<u8>),
        #[prost(message, tag = "17")]
        DatasetValue(super::DataSet),
        #[prost(message, tag = "18")]
        TemplateValue(super::Template),
        #[prost(message, tag = "19")]
        ExtensionValue(MetricValueExtension),
    }
}
