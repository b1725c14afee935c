//! The PSRP message (MS-PSRP 2.2.1): a 40-byte header and a CLIXML body.

use uuid::Uuid;

/// Size of the message header.
pub const HEADER_LEN: usize = 40;

/// Who a message is for (MS-PSRP 2.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `0x00000001`
    Client,
    /// `0x00000002`
    Server,
}

macro_rules! message_types {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// A PSRP message type (MS-PSRP 2.2.1, 2.2.2).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum MessageType {
            $($(#[$doc])* $name,)*
            /// A value this implementation does not know.
            Unknown(u32),
        }

        impl MessageType {
            /// The wire value.
            pub fn value(self) -> u32 {
                match self {
                    $(MessageType::$name => $value,)*
                    MessageType::Unknown(v) => v,
                }
            }

            /// From the wire value.
            pub fn from_value(v: u32) -> MessageType {
                match v {
                    $($value => MessageType::$name,)*
                    other => MessageType::Unknown(other),
                }
            }
        }
    };
}

message_types! {
    /// SESSION_CAPABILITY
    SessionCapability = 0x0001_0002,
    /// INIT_RUNSPACEPOOL
    InitRunspacePool = 0x0001_0004,
    /// PUBLIC_KEY
    PublicKey = 0x0001_0005,
    /// ENCRYPTED_SESSION_KEY
    EncryptedSessionKey = 0x0001_0006,
    /// PUBLIC_KEY_REQUEST
    PublicKeyRequest = 0x0001_0007,
    /// CONNECT_RUNSPACEPOOL
    ConnectRunspacePool = 0x0001_0008,
    /// SET_MAX_RUNSPACES
    SetMaxRunspaces = 0x0002_1002,
    /// SET_MIN_RUNSPACES
    SetMinRunspaces = 0x0002_1003,
    /// RUNSPACE_AVAILABILITY
    RunspaceAvailability = 0x0002_1004,
    /// RUNSPACEPOOL_STATE
    RunspacePoolState = 0x0002_1005,
    /// CREATE_PIPELINE
    CreatePipeline = 0x0002_1006,
    /// GET_AVAILABLE_RUNSPACES
    GetAvailableRunspaces = 0x0002_1007,
    /// USER_EVENT
    UserEvent = 0x0002_1008,
    /// APPLICATION_PRIVATE_DATA
    ApplicationPrivateData = 0x0002_1009,
    /// GET_COMMAND_METADATA
    GetCommandMetadata = 0x0002_100A,
    /// RUNSPACEPOOL_INIT_DATA
    RunspacePoolInitData = 0x0002_100B,
    /// RESET_RUNSPACE_STATE
    ResetRunspaceState = 0x0002_100C,
    /// RUNSPACEPOOL_HOST_CALL
    RunspacePoolHostCall = 0x0002_1100,
    /// RUNSPACEPOOL_HOST_RESPONSE
    RunspacePoolHostResponse = 0x0002_1101,
    /// PIPELINE_INPUT
    PipelineInput = 0x0004_1002,
    /// END_OF_PIPELINE_INPUT
    EndOfPipelineInput = 0x0004_1003,
    /// PIPELINE_OUTPUT
    PipelineOutput = 0x0004_1004,
    /// ERROR_RECORD
    ErrorRecord = 0x0004_1005,
    /// PIPELINE_STATE
    PipelineState = 0x0004_1006,
    /// DEBUG_RECORD
    DebugRecord = 0x0004_1007,
    /// VERBOSE_RECORD
    VerboseRecord = 0x0004_1008,
    /// WARNING_RECORD
    WarningRecord = 0x0004_1009,
    /// PROGRESS_RECORD
    ProgressRecord = 0x0004_1010,
    /// INFORMATION_RECORD
    InformationRecord = 0x0004_1011,
    /// PIPELINE_HOST_CALL
    PipelineHostCall = 0x0004_1100,
    /// PIPELINE_HOST_RESPONSE
    PipelineHostResponse = 0x0004_1101,
}

/// A message split into its header fields and its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// Destination.
    pub destination: Destination,
    /// Message type.
    pub message_type: MessageType,
    /// The runspace pool id.
    pub rpid: Uuid,
    /// The pipeline id; nil for messages to or from the pool.
    pub pid: Uuid,
    /// The CLIXML body, with any UTF-8 byte-order mark left in place (the CLIXML decoder skips it).
    pub data: &'a [u8],
}

/// What was wrong with a message header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Shorter than the header.
    #[error("message of {0} bytes is shorter than its 40-byte header")]
    Truncated(usize),
    /// A destination other than 1 or 2.
    #[error("unknown message destination {0:#010x}")]
    BadDestination(u32),
}

impl<'a> Message<'a> {
    /// Splits a reassembled message.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, MessageError> {
        if bytes.len() < HEADER_LEN {
            return Err(MessageError::Truncated(bytes.len()));
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
        let guid_at = |i: usize| Uuid::from_bytes_le(bytes[i..i + 16].try_into().unwrap_or_default());
        let destination = match u32_at(0) {
            1 => Destination::Client,
            2 => Destination::Server,
            other => return Err(MessageError::BadDestination(other)),
        };
        Ok(Message {
            destination,
            message_type: MessageType::from_value(u32_at(4)),
            rpid: guid_at(8),
            pid: guid_at(24),
            data: &bytes[HEADER_LEN..],
        })
    }

    /// Appends the message to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let dest: u32 = match self.destination {
            Destination::Client => 1,
            Destination::Server => 2,
        };
        out.extend_from_slice(&dest.to_le_bytes());
        out.extend_from_slice(&self.message_type.value().to_le_bytes());
        out.extend_from_slice(&self.rpid.to_bytes_le());
        out.extend_from_slice(&self.pid.to_bytes_le());
        out.extend_from_slice(self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_guid_byte_order() {
        let rpid = Uuid::parse_str("76056a84-51dc-4f24-9262-ca2a55464b2b").expect("guid");
        let m = Message {
            destination: Destination::Server,
            message_type: MessageType::SessionCapability,
            rpid,
            pid: Uuid::nil(),
            data: b"<Obj/>",
        };
        let mut bytes = Vec::new();
        m.write(&mut bytes);
        // .NET Guid.ToByteArray order: Data1..3 little-endian (as recorded from Windows).
        assert_eq!(&bytes[..12], &[2, 0, 0, 0, 2, 0, 1, 0, 0x84, 0x6a, 0x05, 0x76]);
        assert_eq!(Message::parse(&bytes), Ok(m));
        assert_eq!(Message::parse(&bytes[..39]), Err(MessageError::Truncated(39)));
        assert_eq!(MessageType::from_value(0x0001_0003), MessageType::Unknown(0x0001_0003));
    }
}
