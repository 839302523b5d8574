//! Tempo's vParquet4 parquet schema (tempo-blocks.md §4.1), as parquet
//! message text, and the indexes of its 103 leaf columns in file order.
//!
//! Tempo reads blocks with this schema forced and addresses columns by
//! dotted path, so names, nesting, repetition, types and leaf order must be
//! exactly these. `tests/vparquet4_schema.txt` holds the spec's tree written
//! out independently; a test compares the two.

/// The attribute group (`ATTR` in the spec): 7 leaves.
fn attr_list() -> String {
    "required group Attrs (LIST) { repeated group list { required group element {
        required binary Key (STRING);
        required boolean IsArray;
        required group Value (LIST) { repeated group list { required binary element (STRING); } }
        required group ValueInt (LIST) { repeated group list { required int64 element (INTEGER(64,true)); } }
        required group ValueDouble (LIST) { repeated group list { required double element; } }
        required group ValueBool (LIST) { repeated group list { required boolean element; } }
        optional binary ValueUnsupported (STRING);
    } } }"
        .to_owned()
}

fn dedicated() -> String {
    let columns: String = (1..=10)
        .map(|i| format!("optional binary String{i:02} (STRING); "))
        .collect();
    format!("required group DedicatedAttributes {{ {columns}}}")
}

/// The schema as parquet message text.
pub fn message_type() -> String {
    let attrs = attr_list();
    let dedicated = dedicated();
    format!(
        "message Trace {{
  required binary TraceID;
  required binary TraceIDText (STRING);
  required int64 StartTimeUnixNano (INTEGER(64,false));
  required int64 EndTimeUnixNano (INTEGER(64,false));
  required int64 DurationNano (INTEGER(64,false));
  required binary RootServiceName (STRING);
  required binary RootSpanName (STRING);
  required group ServiceStats (MAP) {{ repeated group key_value {{
    required binary key (STRING);
    required group value {{ required int32 SpanCount (INTEGER(32,false)); required int32 ErrorCount (INTEGER(32,false)); }}
  }} }}
  required group rs (LIST) {{ repeated group list {{ required group element {{
    required group Resource {{
      {attrs}
      required int32 DroppedAttributesCount (INTEGER(32,true));
      required binary ServiceName (STRING);
      optional binary Cluster (STRING);
      optional binary Namespace (STRING);
      optional binary Pod (STRING);
      optional binary Container (STRING);
      optional binary K8sClusterName (STRING);
      optional binary K8sNamespaceName (STRING);
      optional binary K8sPodName (STRING);
      optional binary K8sContainerName (STRING);
      {dedicated}
    }}
    required group ss (LIST) {{ repeated group list {{ required group element {{
      required group Scope {{
        required binary Name (STRING);
        required binary Version (STRING);
        {attrs}
        required int32 DroppedAttributesCount (INTEGER(32,true));
      }}
      required group Spans (LIST) {{ repeated group list {{ required group element {{
        required binary SpanID;
        required binary ParentSpanID;
        required int32 ParentID (INTEGER(32,true));
        required int32 NestedSetLeft (INTEGER(32,true));
        required int32 NestedSetRight (INTEGER(32,true));
        required binary Name (STRING);
        required int64 Kind (INTEGER(64,true));
        required binary TraceState (STRING);
        required int64 StartTimeUnixNano (INTEGER(64,false));
        required int64 DurationNano (INTEGER(64,false));
        required int64 StatusCode (INTEGER(64,true));
        required binary StatusMessage (STRING);
        {attrs}
        required int32 DroppedAttributesCount (INTEGER(32,true));
        required group Events (LIST) {{ repeated group list {{ required group element {{
          required int64 TimeSinceStartNano (INTEGER(64,false));
          required binary Name (STRING);
          {attrs}
          required int32 DroppedAttributesCount (INTEGER(32,true));
        }} }} }}
        required int32 DroppedEventsCount (INTEGER(32,true));
        required group Links (LIST) {{ repeated group list {{ required group element {{
          required binary TraceID;
          required binary SpanID;
          required binary TraceState (STRING);
          {attrs}
          required int32 DroppedAttributesCount (INTEGER(32,true));
        }} }} }}
        required int32 DroppedLinksCount (INTEGER(32,true));
        optional binary HttpMethod (STRING);
        optional binary HttpUrl (STRING);
        optional int64 HttpStatusCode (INTEGER(64,true));
        {dedicated}
      }} }} }}
    }} }} }}
  }} }} }}
}}"
    )
}

/// Leaf column indexes, in file order. Each name abbreviates the column
/// path (`SPAN_` for `rs.list.element.ss.list.element.Spans.list.element.`,
/// `RES_` for the resource, `*_ATTRS` the first leaf of an `Attrs` list);
/// a unit test in `write.rs` checks the paths.
#[allow(missing_docs)]
pub mod leaf {
    /// Offsets of the leaves of an `Attrs` list from its first leaf.
    pub mod attr {
        /// Key.
        pub const KEY: usize = 0;
        /// IsArray.
        pub const IS_ARRAY: usize = 1;
        /// Value (strings).
        pub const VALUE: usize = 2;
        /// ValueInt.
        pub const INT: usize = 3;
        /// ValueDouble.
        pub const DOUBLE: usize = 4;
        /// ValueBool.
        pub const BOOL: usize = 5;
        /// ValueUnsupported.
        pub const UNSUPPORTED: usize = 6;
        /// Leaves per attribute list.
        pub const LEAVES: usize = 7;
    }
    /// Dedicated string columns per scope.
    pub const DEDICATED: usize = 10;

    pub const TRACE_ID: usize = 0;
    pub const TRACE_ID_TEXT: usize = 1;
    pub const START: usize = 2;
    pub const END: usize = 3;
    pub const DURATION: usize = 4;
    pub const ROOT_SERVICE: usize = 5;
    pub const ROOT_SPAN: usize = 6;
    pub const STATS_KEY: usize = 7;
    pub const STATS_SPANS: usize = 8;
    pub const STATS_ERRORS: usize = 9;

    pub const RES_ATTRS: usize = 10;
    pub const RES_DROPPED: usize = 17;
    pub const RES_SERVICE: usize = 18;
    /// Cluster, Namespace, Pod, Container, K8sClusterName,
    /// K8sNamespaceName, K8sPodName, K8sContainerName.
    pub const RES_WELL_KNOWN: usize = 19;
    pub const RES_DEDICATED: usize = 27;

    pub const SCOPE_NAME: usize = 37;
    pub const SCOPE_VERSION: usize = 38;
    pub const SCOPE_ATTRS: usize = 39;
    pub const SCOPE_DROPPED: usize = 46;

    pub const SPAN_ID: usize = 47;
    pub const SPAN_PARENT_SPAN_ID: usize = 48;
    pub const SPAN_PARENT_ID: usize = 49;
    pub const SPAN_LEFT: usize = 50;
    pub const SPAN_RIGHT: usize = 51;
    pub const SPAN_NAME: usize = 52;
    pub const SPAN_KIND: usize = 53;
    pub const SPAN_TRACE_STATE: usize = 54;
    pub const SPAN_START: usize = 55;
    pub const SPAN_DURATION: usize = 56;
    pub const SPAN_STATUS_CODE: usize = 57;
    pub const SPAN_STATUS_MESSAGE: usize = 58;
    pub const SPAN_ATTRS: usize = 59;
    pub const SPAN_DROPPED: usize = 66;

    pub const EVENT_TIME: usize = 67;
    pub const EVENT_NAME: usize = 68;
    pub const EVENT_ATTRS: usize = 69;
    pub const EVENT_DROPPED: usize = 76;
    pub const SPAN_DROPPED_EVENTS: usize = 77;

    pub const LINK_TRACE_ID: usize = 78;
    pub const LINK_SPAN_ID: usize = 79;
    pub const LINK_TRACE_STATE: usize = 80;
    pub const LINK_ATTRS: usize = 81;
    pub const LINK_DROPPED: usize = 88;
    pub const SPAN_DROPPED_LINKS: usize = 89;

    pub const SPAN_HTTP_METHOD: usize = 90;
    pub const SPAN_HTTP_URL: usize = 91;
    pub const SPAN_HTTP_STATUS: usize = 92;
    pub const SPAN_DEDICATED: usize = 93;

    /// Every leaf.
    pub const COUNT: usize = 103;
}

/// Resource attributes Tempo keeps in their own columns, in column order
/// from [`leaf::RES_WELL_KNOWN`].
pub const RESOURCE_WELL_KNOWN: [&str; 8] = [
    "cluster",
    "namespace",
    "pod",
    "container",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
];
