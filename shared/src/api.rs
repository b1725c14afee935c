//! The browser↔relay WebSocket contract (documented in `docs/api.md`).
//!
//! API boundary: this module is the only place in the workspace that derives `Serialize`/`Deserialize` for the
//! browser. Every message is one JSON text frame, an internally tagged object (`{"type": "run", …}`), snake_case.
//! Objects travel as their CLIXML text (MS-PSRP 2.2.5), which the browser decodes with [`crate::clixml`]; the value
//! model itself never crosses as JSON.
//!
//! Versioning: [`PROTOCOL_VERSION`] grows when a message changes meaning or a field is removed; new optional fields
//! and new message types keep the version. Each side ignores fields it does not know.

use serde::{Deserialize, Serialize};

/// The version of this contract. The relay refuses a `hello` with another one (`unsupported_version`).
pub const PROTOCOL_VERSION: u32 = 1;

// Decoding what the relay sends. The browser decodes `ServerMessage`, the types in it and `PageConfig` with
// `read_fields!` rather than serde's derive, which makes for every type a field-name visitor, a positional (JSON
// array) form and, per field, a slot with its own error paths: about 4 KiB more of the browser's WebAssembly (gzip).
// Here a field is one `match` arm and one call of the shared `decode::put`, and the same JSON objects read the same
// way. Types the relay decodes (`ClientMessage` and what it holds, `Target`, which also comes in `PageConfig`, and
// `Transport` and `WinrmAuth`, also in the relay's configuration file) keep the derive.

/// Reads a JSON object's fields into `$ctor` (a struct or a struct variant) as serde's derive does: by name in any
/// order, unknown names skipped, a name given twice an error, a missing field its `Default` when it is
/// `#[serde(default)]` and an error otherwise (an `Option` too: every optional field says `#[serde(default)]`).
/// Each field comes with its attributes, `[#[…] …] name`; serde attributes other than `default` and
/// `skip_serializing_if` are refused at compile time, so that decoding cannot silently disagree with encoding.
macro_rules! read_fields {
    ($map:ident, $ctor:path { $( [$($attr:tt)*] $field:ident ),* $(,)? }) => {{
        $( let mut $field = None; )*
        decode::read_map(&mut $map, &mut |map, key| {
            match key {
                $( stringify!($field) => decode::put(map, &mut $field, stringify!($field))?, )*
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        // One way out for a missing field, rather than one per field (each dropping what was read).
        let missing = $( if field_slot!(@missing $field, $($attr)*) { Some(stringify!($field)) } else )* { None };
        if let Some(name) = missing {
            return Err(serde::de::Error::missing_field(name));
        }
        $ctor { $( $field: field_slot!(@value $field, $($attr)*) ),* }
    }};
}

/// A field's slot once its object is read (see [`read_fields`]), by the field's attributes: `@missing`, whether it
/// is a required field that was not there; `@value`, the field's value (its default when it was not there).
macro_rules! field_slot {
    (@missing $field:ident, ) => { $field.is_none() };
    (@value $field:ident, ) => { $field.unwrap_or_else(|| unreachable!("a missing field is an error")) };
    (@missing $field:ident, #[serde(default $(, skip_serializing_if = $_skip:literal)?)] $($more:tt)*) => { false };
    (@value $field:ident, #[serde(default $(, skip_serializing_if = $_skip:literal)?)] $($more:tt)*) => { $field.unwrap_or_default() };
    (@$mode:ident $field:ident, #[serde(skip_serializing_if = $_skip:literal)] $($more:tt)*) => { field_slot!(@$mode $field, $($more)*) };
    (@$mode:ident $field:ident, #[doc = $_doc:literal] $($more:tt)*) => { field_slot!(@$mode $field, $($more)*) };
    (@$mode:ident $field:ident, #[$($other:tt)*] $($more:tt)*) => {
        compile_error!(concat!("read_fields! does not know the field attribute #[", stringify!($($other)*), "]"))
    };
}

/// A struct the relay sends and the browser decodes: the struct as written, and a `Deserialize` by
/// [`read_fields`] (a JSON object only).
macro_rules! relay_struct {
    (
        $(#[$($attr:tt)*])*
        pub struct $name:ident {
            $( $(#[$($field_attr:tt)*])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$($attr)*])*
        pub struct $name {
            $( $(#[$($field_attr)*])* pub $field: $ty ),*
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                struct FieldsVisitor;

                impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("struct ", stringify!($name)))
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        Ok(read_fields!(map, $name { $( [$(#[$($field_attr)*])*] $field ),* }))
                    }
                }

                deserializer.deserialize_map(FieldsVisitor)
            }
        }
    };
}

/// A unit enum the relay sends and the browser decodes (snake_case names): the enum as written, and a
/// `Deserialize` from its name alone (a JSON string), without the other forms serde's enum derive reads.
macro_rules! relay_enum {
    (
        $(#[doc = $doc:literal])*
        #[derive($($derive:tt)*)]
        #[serde(rename_all = "snake_case")]
        pub enum $name:ident {
            $( $(#[doc = $variant_doc:literal])* $variant:ident ),* $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[derive($($derive)*)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[doc = $variant_doc])* $variant ),*
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                /// The names of the variants, as serde's derive names them.
                #[derive(Deserialize)]
                #[serde(rename_all = "snake_case", variant_identifier)]
                enum Name {
                    $($variant),*
                }

                Ok(match Name::deserialize(deserializer)? {
                    $( Name::$variant => $name::$variant ),*
                })
            }
        }
    };
}

/// What [`read_fields`] shares between all the types it reads.
mod decode {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

    /// A field name, borrowed from the JSON text unless it has escapes.
    pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
            struct KeyVisitor;

            impl<'de> Visitor<'de> for KeyVisitor {
                type Value = Key<'de>;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a field name")
                }

                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }

                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_owned())))
                }
            }

            deserializer.deserialize_str(KeyVisitor)
        }
    }

    /// Reads the value of the field named, if it knows the name (then `true`).
    pub(super) type Field<'a, A, E> = dyn FnMut(&mut A, &str) -> Result<bool, E> + 'a;

    /// Reads a JSON object's fields: `field` reads those it knows, the others are skipped. One loop for all the
    /// types (their slots stay the caller's, dropped in one place on an error).
    pub(super) fn read_map<'de, A: MapAccess<'de>>(map: &mut A, field: &mut Field<'_, A, A::Error>) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'_>>()? {
            if !field(map, &key.0)? {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }

    /// Reads field `name`'s value into its slot; a second value is an error.
    pub(super) fn put<'de, A: MapAccess<'de>, T: Deserialize<'de>>(map: &mut A, slot: &mut Option<T>, name: &'static str) -> Result<(), A::Error> {
        if slot.is_some() {
            return Err(de::Error::duplicate_field(name));
        }
        *slot = Some(map.next_value()?);
        Ok(())
    }
}

/// A relay session, numbered per relay from 1 like PowerShell's `Id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

/// psgate's own prompt (`PS psgate>`): `run`, `stop`, `host_response`, `attach` and `complete` with this session
/// id go to the user's prompt on the relay (its variables, history and jobs, shared by all the user's pages), whose
/// pipelines' events come as any session's do. No session in `sessions` has it.
pub const LOCAL_SESSION: SessionId = SessionId(0);

/// A pipeline (one console command) of a session, numbered per relay from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PipelineId(pub u64);

/// An Invoke-Command run over many sessions, numbered per relay from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InvocationId(pub u64);

/// Invoke-Command's default `-ThrottleLimit`: how many sessions run the script at once.
pub const DEFAULT_THROTTLE_LIMIT: u32 = 32;

/// How the relay reaches a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// The `powershell` subsystem of an SSH server.
    Ssh,
    /// A PowerShell process on the relay's machine (the configured command line).
    Local,
    /// WS-Management (WinRM) over HTTP (5985) or HTTPS (5986).
    Winrm,
}

/// New-PSSession's `-Authentication` for WinRM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WinrmAuth {
    /// SPNEGO: Kerberos when the relay knows a KDC for the realm, else NTLM (PowerShell's `Default`).
    #[default]
    Negotiate,
    /// NTLM only.
    Ntlm,
    /// Kerberos only.
    Kerberos,
    /// Basic (HTTPS only, unless the relay's configuration allows it over HTTP).
    Basic,
}

/// Disconnect-PSSession's `-OutputBufferingMode`: what the target does when a disconnected pipeline's output
/// buffer is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputBufferingMode {
    /// The pipeline waits until somebody connects and reads.
    Block,
    /// The oldest output is discarded; the pipeline goes on.
    Drop,
}

/// One target of a `new_sessions` request (New-PSSession's parameters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The host name or address (`localhost` for the local transport).
    pub computer_name: String,
    /// The transport.
    pub transport: Transport,
    /// The port (default: 22 for SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The user to log in as (SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The password (SSH); never logged, never sent back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A private key file on the relay's machine (SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// The SSH subsystem to start (default `powershell`), e.g. a JEA-style restricted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    /// The session's name (default: `RunspaceN` as PowerShell names them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `-UseSSL` (WinRM): HTTPS, default port 5986 instead of HTTP on 5985.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_ssl: bool,
    /// `-Authentication` (WinRM; default Negotiate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<WinrmAuth>,
    /// `-ConfigurationName` (WinRM: the endpoint, e.g. a JEA one; default `Microsoft.PowerShell`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_name: Option<String>,
    /// Connect-PSSession to this shell (`InstanceId`, as `remote_shells` lists it) that the target keeps
    /// disconnected, instead of creating a new one (WinRM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_id: Option<String>,
}

impl Target {
    /// A target with nothing but its computer and transport (defaults for everything else).
    pub fn new(computer_name: impl Into<String>, transport: Transport) -> Target {
        Target {
            computer_name: computer_name.into(),
            transport,
            port: None,
            user: None,
            password: None,
            key_file: None,
            subsystem: None,
            name: None,
            use_ssl: false,
            authentication: None,
            configuration_name: None,
            shell_id: None,
        }
    }
}

relay_enum! {
    /// A session's state, as `Get-PSSession` shows it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum SessionState {
        /// Connecting and opening the runspace pool.
        Opening,
        /// Ready for commands.
        Opened,
        /// Disconnect-PSSession: the remote shell runs on, nobody reads its output (WinRM). Connect picks it up.
        Disconnected,
        /// The connection failed or was lost.
        Broken,
        /// Closed (it is about to disappear from the list).
        Closed,
    }
}

relay_enum! {
    /// Whether a session can take a command now, as `Get-PSSession` shows it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Availability {
        /// Opened and idle.
        Available,
        /// A pipeline is running.
        Busy,
        /// Not opened (opening, broken or closed).
        None,
    }
}

relay_struct! {
    /// One row of the sessions list (`Get-PSSession`'s columns).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct SessionInfo {
        /// `Id`
        pub id: SessionId,
        /// `Name`
        pub name: String,
        /// `ComputerName`
        pub computer_name: String,
        /// `Transport`
        pub transport: Transport,
        /// `State`
        pub state: SessionState,
        /// `Availability`
        pub availability: Availability,
        /// Why it broke, when it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
        /// What the session's remote `prompt` function returned last (`PS C:\Users\me> `), as Enter-PSSession
        /// shows it after `[ComputerName]: `; absent until the first answer, or when the target has no prompt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub prompt: Option<String>,
        /// `ConfigurationName` (WinRM).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub configuration_name: Option<String>,
        /// `InstanceId`: the remote shell's id (WinRM), once it exists.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub instance_id: Option<String>,
        /// It can be disconnected and connected again (WinRM).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub can_disconnect: bool,
        /// Seconds until the relay's IdleTimeout quota closes it, when one applies (none while a command runs in it
        /// connected); as of the message (the relay sends the session again at least once a minute while it counts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub idle_left_secs: Option<u64>,
        /// Seconds until the relay's MaxShellRunTime quota closes it, when one applies.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub run_left_secs: Option<u64>,
    }
}

relay_struct! {
    /// A shell a WinRM target holds for the user (`Get-PSSession -ComputerName`), connected or not.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct RemoteShell {
        /// `InstanceId` (the ShellId).
        pub shell_id: String,
        /// The shell's name.
        pub name: String,
        /// `Connected` or `Disconnected`, as the target says.
        pub state: String,
        /// The owner, as the target names it.
        pub owner: String,
        /// The configuration (endpoint) name, from the shell's resource URI.
        pub configuration_name: String,
        /// The address of the client that holds or last held it.
        #[serde(default)]
        pub client_ip: String,
        /// How long it lives disconnected, in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub idle_timeout_secs: Option<u64>,
        /// Its commands (pipelines) still on the target.
        #[serde(default)]
        pub commands: u32,
        /// A session of this relay user is attached to it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub session: Option<SessionId>,
    }
}

/// The browser's answer to a host call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostAnswer {
    /// The method's return value as CLIXML (`<S>text</S>`, `<I32>1</I32>`, …).
    Value {
        /// The CLIXML text.
        clixml: String,
    },
    /// The host could not do it (the user cancelled): the message becomes the remote exception.
    Error {
        /// The message.
        message: String,
    },
    /// A SecureString typed in the browser (`ReadLineAsSecureString`: Read-Host -AsSecureString). The browser has
    /// no session key: the relay encrypts the text into a `<SS>` (exchanging the key with the target first when
    /// needed). Never logged.
    Secure {
        /// The plain text.
        text: String,
    },
    /// A credential (`PromptForCredential`: Get-Credential): the relay makes the PSCredential, the password a
    /// SecureString encrypted with the session key.
    Credential {
        /// The user name.
        user: String,
        /// The password in plain text. Never logged.
        password: String,
    },
    /// The fields of a `Prompt` call (Read-Host -Prompt, mandatory parameters), in plain text; a field marked
    /// `secure` becomes a SecureString (for fields of type `System.Security.SecureString`).
    Fields {
        /// One answer per field.
        fields: Vec<FieldAnswer>,
    },
}

impl HostAnswer {
    /// Whether the relay needs the session key to turn this answer into CLIXML.
    pub fn needs_session_key(&self) -> bool {
        match self {
            HostAnswer::Value { .. } | HostAnswer::Error { .. } => false,
            HostAnswer::Secure { .. } | HostAnswer::Credential { .. } => true,
            HostAnswer::Fields { fields } => fields.iter().any(|f| f.secure),
        }
    }
}

relay_struct! {
    /// A module of implicit remoting at psgate's prompt (`prompt_modules`).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct PromptModule {
        /// Its name (`tmp_….psgate`).
        pub name: String,
        /// The session its commands run in.
        pub session: SessionId,
        /// Its commands' local names (`New-remADUser`).
        pub commands: Vec<String>,
    }
}

/// One field of a [`HostAnswer::Fields`] answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldAnswer {
    /// The field's name (from the `Prompt` call's field descriptions).
    pub name: String,
    /// The text typed.
    pub text: String,
    /// Send it as a SecureString.
    #[serde(default)]
    pub secure: bool,
}

relay_struct! {
    /// One session's part of an Invoke-Command run.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct InvokeHost {
        /// The session.
        pub session: SessionId,
        /// Its `ComputerName` (the `PSComputerName` of its output).
        pub computer_name: String,
        /// The pipeline that ran the script there; absent when it could not start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pipeline: Option<PipelineId>,
        /// The final state (`failed` when the script could not start).
        pub state: PipelineState,
        /// The terminating error record as CLIXML, when there was one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
        /// Why the script did not start there (the session is not opened, or busy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub message: Option<String>,
    }
}

relay_enum! {
    /// A record stream (MS-PSRP 2.2.2.20-24, 2.2.2.27).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum RecordKind {
        /// A non-terminating error (ErrorRecord).
        Error,
        /// `WARNING:`
        Warning,
        /// `VERBOSE:`
        Verbose,
        /// `DEBUG:`
        Debug,
        /// InformationRecord (also Write-Host).
        Information,
        /// ProgressRecord: coalesced by the relay (the latest of each activity, at a bounded rate).
        Progress,
    }
}

relay_enum! {
    /// A pipeline's state (MS-PSRP 2.2.3.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum PipelineState {
        /// Running.
        Running,
        /// Stopping after a `stop`.
        Stopping,
        /// Stopped by `stop`.
        Stopped,
        /// Finished.
        Completed,
        /// Ended with a terminating error.
        Failed,
    }
}

impl PipelineState {
    /// Whether nothing more follows.
    pub fn is_terminal(self) -> bool {
        matches!(self, PipelineState::Stopped | PipelineState::Completed | PipelineState::Failed)
    }
}

relay_enum! {
    /// A stable error code; the message beside it is for people.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum ErrorCode {
        /// The frame is not a message of this protocol (not JSON, unknown type, missing or ill-typed field, binary).
        BadMessage,
        /// `hello` with another [`PROTOCOL_VERSION`].
        UnsupportedVersion,
        /// No such session for this user (another user's sessions are not named).
        UnknownSession,
        /// No such pipeline in that session.
        UnknownPipeline,
        /// The target is outside the relay's allow-list; nothing was attempted.
        TargetNotAllowed,
        /// The target is incomplete (an SSH target without a user, a password or key).
        InvalidTarget,
        /// The session is not opened (or is running another pipeline).
        SessionNotReady,
        /// The output asked for by `attach` has left the bounded buffer; what follows starts later.
        OutputDropped,
        /// The target refused the credentials.
        AuthenticationFailed,
        /// The target refused because one of its quotas (MaxShellsPerUser, MaxConcurrentUsers, …) is reached; the
        /// message names it.
        QuotaExceeded,
        /// The target could not be reached or answered with an error; the message is the target's.
        TargetFailed,
        /// The session's transport cannot do it (Disconnect over SSH).
        NotSupported,
        /// Not allowed to this user: an observer's `run`, `stop` or `host_response`, a join without an invitation,
        /// sharing a session that is not one's own.
        Forbidden,
        /// The relay failed; the detail is in its log.
        Internal,
    }
}

/// Browser → relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The browser's protocol version (optional: the relay greets first).
    Hello {
        /// [`PROTOCOL_VERSION`] of the browser.
        protocol: u32,
    },
    /// New-PSSession on one or many targets.
    NewSessions {
        /// The targets.
        targets: Vec<Target>,
    },
    /// Get-PSSession, optionally filtered.
    GetSessions {
        /// Only sessions on this computer (case-insensitive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        computer_name: Option<String>,
        /// Only sessions with this name (case-insensitive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Remove-PSSession: these ids, or all of the user's sessions.
    RemoveSessions {
        /// The sessions.
        #[serde(default)]
        ids: Vec<SessionId>,
        /// Every session of the user.
        #[serde(default)]
        all: bool,
    },
    /// Runs one console command in a session (answered by `pipeline_started`, then its events).
    Run {
        /// The session.
        session: SessionId,
        /// The script, as typed at the prompt.
        script: String,
    },
    /// Ctrl+C: stops the pipeline.
    Stop {
        /// The session.
        session: SessionId,
        /// The pipeline.
        pipeline: PipelineId,
    },
    /// Answers a `host_call`.
    HostResponse {
        /// The session.
        session: SessionId,
        /// The pipeline.
        pipeline: PipelineId,
        /// The `call_id` of the host call.
        call_id: i64,
        /// The answer.
        answer: HostAnswer,
    },
    /// Follows a pipeline's events after `after_seq` (0: from the start): a reconnect or a second tab.
    Attach {
        /// The session.
        session: SessionId,
        /// The pipeline.
        pipeline: PipelineId,
        /// The last sequence number seen.
        #[serde(default)]
        after_seq: u64,
    },
    /// Invoke-Command: runs one script on many of the user's sessions, at most `throttle_limit` at once (answered
    /// by `invoke_started`, then per session `invoke_host_started`, its pipeline's events, `invoke_host_finished`,
    /// and last `invoke_finished`).
    Invoke {
        /// The sessions (each at most once; an id that is not the user's: `unknown_session`, nothing runs).
        sessions: Vec<SessionId>,
        /// The script.
        script: String,
        /// How many sessions run it at once (default [`DEFAULT_THROTTLE_LIMIT`]; 0 means the default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        throttle_limit: Option<u32>,
    },
    /// What the relay keeps of the user's pipelines and Invoke-Command runs (answered by `history`): a page
    /// opened anew, or after a reconnect, rebuilds its consoles from it. With `replay`, every kept pipeline's
    /// events follow from its first kept one (as `attach` with `after_seq` 0 would).
    GetHistory {
        /// Follow every kept pipeline from the start.
        #[serde(default)]
        replay: bool,
    },
    /// Disconnect-PSSession (WinRM sessions): the remote shell and its running commands go on without anybody
    /// reading; answered by `session_changed` (state `disconnected`) per session.
    DisconnectSessions {
        /// The sessions.
        ids: Vec<SessionId>,
        /// `-IdleTimeoutSec`: how long the target keeps the disconnected shell (default: the target's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_timeout_secs: Option<u32>,
        /// `-OutputBufferingMode` (default: the target's, Block).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_buffering_mode: Option<OutputBufferingMode>,
    },
    /// Connect-PSSession: reconnects disconnected sessions (also those the relay kept over a restart); their
    /// pipelines' output produced meanwhile follows. Answered by `session_changed` per session.
    ConnectSessions {
        /// The sessions.
        ids: Vec<SessionId>,
    },
    /// Opens broken sessions again on their targets, with their names and credentials (a session lost with its
    /// relay or its connection): each is removed and a new one made, answered as `new_sessions` is (`sessions`, then
    /// `session_changed` per new session).
    RecreateSessions {
        /// The sessions (all broken).
        ids: Vec<SessionId>,
    },
    /// `Get-PSSession -ComputerName`: the shells a WinRM target holds for the credentials given (answered by
    /// `remote_shells`). Connect to one with `new_sessions` and the target's `shell_id`.
    GetRemoteShells {
        /// The target and credentials (`transport` must be `winrm`).
        target: Target,
    },
    /// Tab completion: runs the remote `TabExpansion2` on `input` with the cursor at `cursor` (in UTF-16 code
    /// units, as PowerShell counts) while the session is idle; answered by `completions`.
    Complete {
        /// The session.
        session: SessionId,
        /// The whole input line(s).
        input: String,
        /// The cursor's offset in `input`, in UTF-16 code units.
        cursor: u32,
    },
    /// Shares one of the user's sessions with another relay user as `observer` (sees everything, types nothing) or
    /// `peer` (may run commands); sharing again changes the role. Answered by `session_shares`.
    ShareSession {
        /// The session.
        session: SessionId,
        /// The relay user invited.
        user: String,
        /// What they may do.
        role: ShareRole,
    },
    /// Revokes a share at once: the user's joined consoles are told (`share_revoked`) and closed. Answered by
    /// `session_shares`.
    UnshareSession {
        /// The session.
        session: SessionId,
        /// The relay user.
        user: String,
    },
    /// Who a session of the user's is shared with (answered by `session_shares`).
    GetSessionShares {
        /// The session.
        session: SessionId,
    },
    /// The sessions other users shared with this one (answered by `shared_sessions`); join one with
    /// `GET /api/ws?join=OWNER/ID`.
    GetSharedSessions {},
    /// A moderator's decision on a pipeline waiting for approval in a moderated session (from a console joined to
    /// it): it runs, or it fails with the reason. Everyone present hears `approval_decided`.
    Approve {
        /// The session.
        session: SessionId,
        /// The pipeline waiting.
        pipeline: PipelineId,
        /// Run it (else deny it).
        approve: bool,
        /// Why (shown to the user whose command it is, and recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

relay_enum! {
    /// What a user a session is shared with may do.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum ShareRole {
        /// Sees everything live; types nothing.
        Observer,
        /// May also run commands, stop them and answer host prompts.
        Peer,
    }
}

relay_struct! {
    /// A user a session is shared with (`session_shares`), or a participant present (`participants`).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct Share {
        /// The relay user.
        pub user: String,
        /// Their role (`None`: the owner, in `participants`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub role: Option<ShareRole>,
    }
}

relay_struct! {
    /// A session shared with the user (`shared_sessions`).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct SharedSession {
        /// Its owner.
        pub owner: String,
        /// Its id among the owner's sessions.
        pub session: SessionId,
        /// The user's role.
        pub role: ShareRole,
    }
}

relay_struct! {
    /// A pipeline the relay still keeps (`history`): a console command or one session's part of an Invoke-Command.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct PipelineRecord {
        /// The session.
        pub session: SessionId,
        /// The pipeline.
        pub pipeline: PipelineId,
        /// The script.
        pub script: String,
        /// The prompt it was typed at (`PS C:\>`; empty for Invoke-Command).
        #[serde(default)]
        pub prompt: String,
        /// The Invoke-Command run it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub invocation: Option<InvocationId>,
        /// It has ended.
        pub finished: bool,
    }
}

relay_struct! {
    /// An Invoke-Command run the relay still keeps (`history`).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct InvocationRecord {
        /// The run.
        pub invocation: InvocationId,
        /// The script.
        pub script: String,
        /// The throttle limit in effect.
        pub throttle_limit: u32,
        /// The sessions, in the order asked, with their computer names.
        pub sessions: Vec<(SessionId, String)>,
        /// Each session's outcome so far: those that finished, in the order they did.
        pub hosts: Vec<InvokeHost>,
        /// Every session has finished (`invoke_finished` was sent).
        pub finished: bool,
    }
}

relay_struct! {
    /// One of `TabExpansion2`'s `CompletionMatches` (a `CompletionResult`).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct Completion {
        /// `CompletionText`: what replaces the range.
        pub text: String,
        /// `ListItemText`: what a list of choices shows.
        pub list_text: String,
        /// `ResultType` (`Command`, `ParameterName`, `ProviderItem`, …).
        pub result_type: String,
        /// `ToolTip`.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub tooltip: String,
    }
}

/// Defines [`ServerMessage`] once, for both directions: serialized internally tagged (`{"type": "output", …}`) by
/// serde's derive, and deserialized by [`read_fields`] once `type` is read (it must come first, as the relay writes
/// it), which neither buffers the message as serde's internally tagged derive would nor costs the browser's
/// WebAssembly a derived visitor per variant.
macro_rules! server_message {
    ($(
        $(#[$($attr:tt)*])*
        $variant:ident {
            $( $(#[$($field_attr:tt)*])* $field:ident : $ty:ty ),* $(,)?
        }
    ),* $(,)?) => {
        /// Relay → browser.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum ServerMessage {
            $(
                $(#[$($attr)*])*
                $variant {
                    $( $(#[$($field_attr)*])* $field: $ty ),*
                }
            ),*
        }

        /// A [`ServerMessage`]'s `type`, named as serde's derive names the variants.
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case", variant_identifier)]
        enum MessageType {
            $($variant),*
        }

        impl<'de> Deserialize<'de> for ServerMessage {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_map(MessageVisitor)
            }
        }

        struct MessageVisitor;

        impl<'de> serde::de::Visitor<'de> for MessageVisitor {
            type Value = ServerMessage;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a message object whose first field is `type`")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ServerMessage, A::Error> {
                match map.next_key::<decode::Key<'_>>()? {
                    Some(key) if key.0 == "type" => {}
                    Some(_) => return Err(serde::de::Error::custom("a message's `type` must be its first field")),
                    None => return Err(serde::de::Error::missing_field("type")),
                }
                Ok(match map.next_value::<MessageType>()? {
                    $(
                        MessageType::$variant => read_fields!(map, ServerMessage::$variant {
                            $( [$(#[$($field_attr)*])*] $field ),*
                        }),
                    )*
                })
            }
        }
    };
}

server_message! {
    /// Sent first on every connection.
    Hello {
        /// [`PROTOCOL_VERSION`] of the relay.
        protocol: u32,
        /// The relay's version.
        server: String,
        /// The logged-in user.
        user: String,
        /// Whether the user is a relay admin (sees and closes every user's sessions: `Get-PSGateSession`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        admin: bool,
    },
    /// The user's sessions (answer to `get_sessions`, `new_sessions` and `remove_sessions`).
    Sessions {
        /// The sessions, by id.
        sessions: Vec<SessionInfo>,
    },
    /// A target of `new_sessions` that got no session (the others are in the `sessions` answer).
    TargetRefused {
        /// The target's computer name.
        computer_name: String,
        /// `target_not_allowed` or `invalid_target`.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// A session's state or availability changed.
    SessionChanged {
        /// The session as it is now.
        session: SessionInfo,
    },
    /// A `run` was accepted; this connection follows the pipeline from its first event.
    PipelineStarted {
        /// The session.
        session: SessionId,
        /// The new pipeline.
        pipeline: PipelineId,
    },
    /// An output object.
    Output {
        /// The session.
        session: SessionId,
        /// The pipeline.
        pipeline: PipelineId,
        /// Its place among the pipeline's events, from 1.
        seq: u64,
        /// The object as a CLIXML message (`<Obj …>`), for [`crate::clixml::decode_message`].
        clixml: String,
    },
    /// A record of another stream.
    Record {
        /// The session.
        session: SessionId,
        /// The pipeline.
        pipeline: PipelineId,
        /// Its place among the pipeline's events.
        seq: u64,
        /// Which stream.
        kind: RecordKind,
        /// The record as CLIXML.
        clixml: String,
    },
    /// The target's host wants something (Read-Host, a prompt, Write-Host). `call_id` < 0: nothing to answer.
    HostCall {
        /// The session.
        session: SessionId,
        /// The pipeline.
        pipeline: PipelineId,
        /// Its place among the pipeline's events.
        seq: u64,
        /// The id `host_response` must carry.
        call_id: i64,
        /// The method's name (MS-PSRP 2.2.3.17: `ReadLine`, `PromptForChoice`, `WriteLine2`, …).
        method: String,
        /// Its arguments, one CLIXML text each.
        args: Vec<String>,
    },
    /// The pipeline's state; terminal states are the last event.
    PipelineState {
        /// The session.
        session: SessionId,
        /// The pipeline.
        pipeline: PipelineId,
        /// Its place among the pipeline's events.
        seq: u64,
        /// The state.
        state: PipelineState,
        /// The terminating error record as CLIXML (Failed, sometimes Stopped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An `invoke` was accepted.
    InvokeStarted {
        /// The run.
        invocation: InvocationId,
        /// The sessions, in the order asked.
        sessions: Vec<SessionId>,
        /// The throttle limit in effect.
        throttle_limit: u32,
        /// The script (every connection of the user hears of the run, not only the one that asked).
        #[serde(default)]
        script: String,
    },
    /// The script started on one session: this pipeline's events follow (outputs carry `PSComputerName`).
    InvokeHostStarted {
        /// The run.
        invocation: InvocationId,
        /// The session.
        session: SessionId,
        /// Its `ComputerName`.
        computer_name: String,
        /// The pipeline (its events are ordinary `output`, `record`, `host_call`, `pipeline_state` messages).
        pipeline: PipelineId,
    },
    /// The script ended on one session (after that pipeline's last event), or could not start there.
    InvokeHostFinished {
        /// The run.
        invocation: InvocationId,
        /// That session's outcome.
        host: InvokeHost,
    },
    /// Every session has finished: the summary, in the order asked.
    InvokeFinished {
        /// The run.
        invocation: InvocationId,
        /// Each session's outcome.
        hosts: Vec<InvokeHost>,
    },
    /// The answer to `get_history`, oldest first.
    History {
        /// The pipelines kept (the last 32 per session).
        pipelines: Vec<PipelineRecord>,
        /// The Invoke-Command runs kept (the last 32 of the user).
        invocations: Vec<InvocationRecord>,
    },
    /// The answer to `get_remote_shells`.
    RemoteShells {
        /// The target asked.
        computer_name: String,
        /// Its shells for the user.
        shells: Vec<RemoteShell>,
    },
    /// The session psgate's prompt has entered (Enter-PSSession), or none: lines typed then go to that session,
    /// but `exit` and `Exit-PSSession`, which go to the prompt. Sent after `hello` and whenever it changes.
    PromptState {
        /// The entered session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entered: Option<SessionId>,
    },
    /// The modules Import-PSSession made at psgate's prompt, each with its session and commands (the sessions panel
    /// shows them). Sent after `hello` when there are any, and whenever they change.
    PromptModules {
        /// The modules, oldest first.
        modules: Vec<PromptModule>,
    },
    /// The answer to `complete`: replace `replacement_length` UTF-16 code units of `input` from
    /// `replacement_index` with one of `matches` (none: nothing completes, or the session was busy).
    Completions {
        /// The session.
        session: SessionId,
        /// The `input` asked about (an answer for older input can be ignored).
        input: String,
        /// The `cursor` asked about.
        cursor: u32,
        /// `ReplacementIndex`.
        replacement_index: u32,
        /// `ReplacementLength`.
        replacement_length: u32,
        /// `CompletionMatches`, in the target's order.
        matches: Vec<Completion>,
    },
    /// Who a session is shared with (the owner's answer to `share_session`, `unshare_session`,
    /// `get_session_shares`).
    SessionShares {
        /// The session.
        session: SessionId,
        /// The users and their roles.
        shares: Vec<Share>,
    },
    /// The sessions shared with the user (`get_shared_sessions`).
    SharedSessions {
        /// The sessions.
        sessions: Vec<SharedSession>,
    },
    /// First on a joined console (`/api/ws?join=OWNER/ID`), after `hello`: the session, the joiner's role; then the
    /// session's kept pipelines (`history`, each followed from its first event) and its live events.
    Joined {
        /// The owner.
        owner: String,
        /// The session.
        session: SessionInfo,
        /// The joiner's role.
        role: ShareRole,
    },
    /// Who is present in a shared session: the owner (no role) and each joiner, sent to all of them when it changes.
    Participants {
        /// The session.
        session: SessionId,
        /// The owner first, then the joiners in the order they came.
        participants: Vec<Share>,
    },
    /// A pipeline of a moderated session waits for a moderator's approval (to everyone present in the session, the
    /// owner's pages included, the moderators' own pages on the owner's relay, and a moderator joining later).
    ApprovalRequested {
        /// The session's owner (a moderator's own pages hear of it too: the session is the owner's).
        #[serde(default)]
        owner: String,
        /// The session.
        session: SessionId,
        /// The pipeline (already announced by `pipeline_started`).
        pipeline: PipelineId,
        /// Its command text.
        command: String,
        /// Who typed it.
        requested_by: String,
        /// Who may decide.
        moderators: Vec<String>,
    },
    /// A moderator decided: the pipeline runs, or ends `failed` with the reason.
    ApprovalDecided {
        /// The session's owner.
        #[serde(default)]
        owner: String,
        /// The session.
        session: SessionId,
        /// The pipeline.
        pipeline: PipelineId,
        /// Whether it runs.
        approved: bool,
        /// The moderator.
        by: String,
        /// Their reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The owner revoked this joiner's share: the joined console closes.
    ShareRevoked {
        /// The owner.
        owner: String,
        /// The session.
        session: SessionId,
    },
    /// Something the browser sent could not be done; the connection stays open.
    Error {
        /// The stable code.
        code: ErrorCode,
        /// For people.
        message: String,
    },
}

impl ServerMessage {
    /// An `error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error { code, message: message.into() }
    }

    /// The sequence number of a pipeline event.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ServerMessage::Output { seq, .. }
            | ServerMessage::Record { seq, .. }
            | ServerMessage::HostCall { seq, .. }
            | ServerMessage::PipelineState { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

relay_struct! {
    /// `GET /api/config` (HTTP JSON, not a WebSocket message): how the relay wants the page to behave. Answered
    /// without a login too, then without the targets.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
    pub struct PageConfig {
        /// Kiosk mode: the sessions panel offers only `kiosk_targets`, and the relay refuses any other target.
        #[serde(default)]
        pub kiosk: bool,
        /// The kiosk's targets (only with a login).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub kiosk_targets: Vec<Target>,
        /// The target `/embed` opens, when the relay sets one (only with a login); it wins over the page's URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub embed_target: Option<Target>,
        /// The `frame-ancestors` sources of `/embed`, the only origins its `postMessage` events go to (empty:
        /// none).
        #[serde(default)]
        pub frame_ancestors: Vec<String>,
        /// A login ends after this many seconds without activity.
        #[serde(default)]
        pub idle_timeout_secs: u64,
    }
}

#[cfg(test)]
mod page_config_tests {
    use super::*;

    #[test]
    fn page_config_json() {
        let c = PageConfig {
            kiosk: true,
            kiosk_targets: vec![Target { name: Some("Shell".into()), ..Target::new("localhost", Transport::Local) }],
            embed_target: None,
            frame_ancestors: vec!["https://portal.example".into()],
            idle_timeout_secs: 900,
        };
        let json = r#"{"kiosk":true,"kiosk_targets":[{"computer_name":"localhost","transport":"local","name":"Shell"}],"frame_ancestors":["https://portal.example"],"idle_timeout_secs":900}"#;
        assert_eq!(serde_json::to_string(&c).expect("encode"), json);
        assert_eq!(serde_json::from_str::<PageConfig>(json).expect("decode"), c);
        assert_eq!(serde_json::from_str::<PageConfig>(r#"{"later":1}"#).expect("unknown fields are ignored"), PageConfig::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_client(json: &str, expect: ClientMessage) {
        let parsed: ClientMessage = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(parsed, expect, "{json}");
        let again: ClientMessage = serde_json::from_str(&serde_json::to_string(&parsed).expect("encode")).expect("decode");
        assert_eq!(again, expect);
    }

    fn check_server(msg: ServerMessage, expect: &str) {
        assert_eq!(serde_json::to_string(&msg).expect("encode"), expect);
        assert_eq!(serde_json::from_str::<ServerMessage>(expect).expect("decode"), msg);
    }

    #[test]
    fn client_messages() {
        check_client(r#"{"type":"hello","protocol":1}"#, ClientMessage::Hello { protocol: 1 });
        check_client(
            r#"{"type":"new_sessions","targets":[{"computer_name":"srv01","transport":"ssh","port":2222,"user":"bob","password":"pw","name":"web"},{"computer_name":"localhost","transport":"local"}]}"#,
            ClientMessage::NewSessions {
                targets: vec![
                    Target { port: Some(2222), user: Some("bob".into()), password: Some("pw".into()), name: Some("web".into()), ..Target::new("srv01", Transport::Ssh) },
                    Target::new("localhost", Transport::Local),
                ],
            },
        );
        check_client(
            r#"{"type":"new_sessions","targets":[{"computer_name":"srv02","transport":"winrm","user":"CONTOSO\\ada","password":"pw","use_ssl":true,"authentication":"kerberos","configuration_name":"JEA.Helpdesk","shell_id":"0A1B"}]}"#,
            ClientMessage::NewSessions {
                targets: vec![Target {
                    user: Some("CONTOSO\\ada".into()),
                    password: Some("pw".into()),
                    use_ssl: true,
                    authentication: Some(WinrmAuth::Kerberos),
                    configuration_name: Some("JEA.Helpdesk".into()),
                    shell_id: Some("0A1B".into()),
                    ..Target::new("srv02", Transport::Winrm)
                }],
            },
        );
        check_client(
            r#"{"type":"disconnect_sessions","ids":[1,2],"idle_timeout_secs":3600,"output_buffering_mode":"drop"}"#,
            ClientMessage::DisconnectSessions { ids: vec![SessionId(1), SessionId(2)], idle_timeout_secs: Some(3600), output_buffering_mode: Some(OutputBufferingMode::Drop) },
        );
        check_client(r#"{"type":"connect_sessions","ids":[3]}"#, ClientMessage::ConnectSessions { ids: vec![SessionId(3)] });
        check_client(r#"{"type":"recreate_sessions","ids":[4]}"#, ClientMessage::RecreateSessions { ids: vec![SessionId(4)] });
        check_client(r#"{"type":"get_sessions"}"#, ClientMessage::GetSessions { computer_name: None, name: None });
        check_client(r#"{"type":"remove_sessions","all":true}"#, ClientMessage::RemoveSessions { ids: vec![], all: true });
        check_client(r#"{"type":"remove_sessions","ids":[1,3]}"#, ClientMessage::RemoveSessions { ids: vec![SessionId(1), SessionId(3)], all: false });
        check_client(r#"{"type":"run","session":1,"script":"Get-Process"}"#, ClientMessage::Run { session: SessionId(1), script: "Get-Process".into() });
        check_client(r#"{"type":"stop","session":1,"pipeline":2}"#, ClientMessage::Stop { session: SessionId(1), pipeline: PipelineId(2) });
        check_client(
            r#"{"type":"host_response","session":1,"pipeline":2,"call_id":5,"answer":{"kind":"value","clixml":"<S>hi</S>"}}"#,
            ClientMessage::HostResponse { session: SessionId(1), pipeline: PipelineId(2), call_id: 5, answer: HostAnswer::Value { clixml: "<S>hi</S>".into() } },
        );
        check_client(
            r#"{"type":"host_response","session":1,"pipeline":2,"call_id":6,"answer":{"kind":"secure","text":"s3cret"}}"#,
            ClientMessage::HostResponse { session: SessionId(1), pipeline: PipelineId(2), call_id: 6, answer: HostAnswer::Secure { text: "s3cret".into() } },
        );
        check_client(
            r#"{"type":"host_response","session":1,"pipeline":2,"call_id":7,"answer":{"kind":"credential","user":"bob","password":"pw"}}"#,
            ClientMessage::HostResponse { session: SessionId(1), pipeline: PipelineId(2), call_id: 7, answer: HostAnswer::Credential { user: "bob".into(), password: "pw".into() } },
        );
        check_client(
            r#"{"type":"host_response","session":1,"pipeline":2,"call_id":8,"answer":{"kind":"fields","fields":[{"name":"pin","text":"1234","secure":true},{"name":"who","text":"me"}]}}"#,
            ClientMessage::HostResponse {
                session: SessionId(1),
                pipeline: PipelineId(2),
                call_id: 8,
                answer: HostAnswer::Fields {
                    fields: vec![
                        FieldAnswer { name: "pin".into(), text: "1234".into(), secure: true },
                        FieldAnswer { name: "who".into(), text: "me".into(), secure: false },
                    ],
                },
            },
        );
        check_client(
            r#"{"type":"invoke","sessions":[1,2],"script":"Get-Date"}"#,
            ClientMessage::Invoke { sessions: vec![SessionId(1), SessionId(2)], script: "Get-Date".into(), throttle_limit: None },
        );
        check_client(
            r#"{"type":"invoke","sessions":[1],"script":"Get-Date","throttle_limit":4}"#,
            ClientMessage::Invoke { sessions: vec![SessionId(1)], script: "Get-Date".into(), throttle_limit: Some(4) },
        );
        check_client(r#"{"type":"attach","session":1,"pipeline":2,"after_seq":7}"#, ClientMessage::Attach { session: SessionId(1), pipeline: PipelineId(2), after_seq: 7 });
    }

    #[test]
    fn malformed_client_messages_are_errors() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"type":"nope"}"#,
            r#"{"type":"run","session":"one","script":"x"}"#,
            r#"{"type":"run","session":1}"#,
            r#"{"type":"new_sessions","targets":[{"computer_name":"a","transport":"telnet"}]}"#,
            r#"{"type":"attach","session":-1,"pipeline":1}"#,
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_server_message_reads_back_and_the_type_must_come_first() {
        let info = SessionInfo {
            id: SessionId(1),
            name: "a".into(),
            computer_name: "srv".into(),
            transport: Transport::Ssh,
            state: SessionState::Opened,
            availability: Availability::Available,
            reason: None,
            prompt: Some("PS C:\\> ".into()),
            configuration_name: None,
            instance_id: None,
            can_disconnect: false, idle_left_secs: None, run_left_secs: None
        };
        let host = InvokeHost { session: SessionId(1), computer_name: "srv".into(), pipeline: Some(PipelineId(2)), state: PipelineState::Failed, error: None, message: Some("busy".into()) };
        let all = [
            ServerMessage::Hello { protocol: 1, server: "0.1".into(), user: "u".into(), admin: false },
            ServerMessage::Sessions { sessions: vec![info.clone()] },
            ServerMessage::TargetRefused { computer_name: "x".into(), code: ErrorCode::TargetNotAllowed, message: "no".into() },
            ServerMessage::SessionChanged { session: info },
            ServerMessage::PipelineStarted { session: SessionId(1), pipeline: PipelineId(2) },
            ServerMessage::RemoteShells {
                computer_name: "srv".into(),
                shells: vec![RemoteShell {
                    shell_id: "0A1B".into(),
                    name: "Runspace1".into(),
                    state: "Disconnected".into(),
                    owner: "CONTOSO\\ada".into(),
                    configuration_name: "Microsoft.PowerShell".into(),
                    client_ip: "10.0.0.5".into(),
                    idle_timeout_secs: Some(7200),
                    commands: 1,
                    session: None,
                }],
            },
            ServerMessage::HostCall { session: SessionId(1), pipeline: PipelineId(2), seq: 1, call_id: 3, method: "ReadLine".into(), args: vec!["<S>a</S>".into()] },
            ServerMessage::InvokeStarted { invocation: InvocationId(1), sessions: vec![SessionId(1)], throttle_limit: 32, script: "gps".into() },
            ServerMessage::InvokeHostStarted { invocation: InvocationId(1), session: SessionId(1), computer_name: "srv".into(), pipeline: PipelineId(2) },
            ServerMessage::InvokeHostFinished { invocation: InvocationId(1), host: host.clone() },
            ServerMessage::InvokeFinished { invocation: InvocationId(1), hosts: vec![host.clone()] },
            ServerMessage::History {
                pipelines: vec![PipelineRecord { session: SessionId(1), pipeline: PipelineId(2), script: "gps".into(), prompt: "PS>".into(), invocation: None, finished: true }],
                invocations: vec![InvocationRecord { invocation: InvocationId(1), script: "gps".into(), throttle_limit: 2, sessions: vec![(SessionId(1), "srv".into())], hosts: vec![host], finished: true }],
            },
            ServerMessage::Completions {
                session: SessionId(1),
                input: "Get-Pr".into(),
                cursor: 6,
                replacement_index: 0,
                replacement_length: 6,
                matches: vec![Completion { text: "Get-Process".into(), list_text: "Get-Process".into(), result_type: "Command".into(), tooltip: String::new() }],
            },
            ServerMessage::error(ErrorCode::Internal, "oops"),
        ];
        for m in all {
            let text = serde_json::to_string(&m).expect("encode");
            assert!(text.starts_with(r#"{"type":""#), "{text}");
            assert_eq!(serde_json::from_str::<ServerMessage>(&text).expect("decode"), m, "{text}");
        }
        for bad in [
            r#"{"session":1,"pipeline":2,"type":"pipeline_started"}"#, // the tag must come first
            r#"{"type":"nope"}"#,
            r#"{"type":"output","session":1}"#,
            r#"{"type":"output","session":"x","pipeline":1,"seq":1,"clixml":""}"#,
            r#"{"type":7}"#,
            r#"{}"#,
            r#"[1]"#,
        ] {
            assert!(serde_json::from_str::<ServerMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_messages() {
        check_server(
            ServerMessage::Output { session: SessionId(1), pipeline: PipelineId(2), seq: 3, clixml: "<I32>5</I32>".into() },
            r#"{"type":"output","session":1,"pipeline":2,"seq":3,"clixml":"<I32>5</I32>"}"#,
        );
        check_server(
            ServerMessage::Record { session: SessionId(1), pipeline: PipelineId(2), seq: 4, kind: RecordKind::Progress, clixml: "<Obj/>".into() },
            r#"{"type":"record","session":1,"pipeline":2,"seq":4,"kind":"progress","clixml":"<Obj/>"}"#,
        );
        check_server(
            ServerMessage::PipelineState { session: SessionId(1), pipeline: PipelineId(2), seq: 5, state: PipelineState::Completed, error: None },
            r#"{"type":"pipeline_state","session":1,"pipeline":2,"seq":5,"state":"completed"}"#,
        );
        check_server(
            ServerMessage::Sessions {
                sessions: vec![SessionInfo {
                    id: SessionId(1),
                    name: "Runspace1".into(),
                    computer_name: "localhost".into(),
                    transport: Transport::Local,
                    state: SessionState::Opened,
                    availability: Availability::Available,
                    reason: None,
                    prompt: None,
                    configuration_name: None,
                    instance_id: None,
                    can_disconnect: false, idle_left_secs: None, run_left_secs: None
                }],
            },
            r#"{"type":"sessions","sessions":[{"id":1,"name":"Runspace1","computer_name":"localhost","transport":"local","state":"opened","availability":"available"}]}"#,
        );
        check_server(
            ServerMessage::SessionChanged {
                session: SessionInfo {
                    id: SessionId(2),
                    name: "Runspace2".into(),
                    computer_name: "srv02".into(),
                    transport: Transport::Winrm,
                    state: SessionState::Disconnected,
                    availability: Availability::None,
                    reason: None,
                    prompt: None,
                    configuration_name: Some("Microsoft.PowerShell".into()),
                    instance_id: Some("0A1B".into()),
                    can_disconnect: true, idle_left_secs: None, run_left_secs: None
                },
            },
            r#"{"type":"session_changed","session":{"id":2,"name":"Runspace2","computer_name":"srv02","transport":"winrm","state":"disconnected","availability":"none","configuration_name":"Microsoft.PowerShell","instance_id":"0A1B","can_disconnect":true}}"#,
        );
        check_server(
            ServerMessage::InvokeFinished {
                invocation: InvocationId(3),
                hosts: vec![InvokeHost {
                    session: SessionId(1),
                    computer_name: "srv01".into(),
                    pipeline: Some(PipelineId(4)),
                    state: PipelineState::Completed,
                    error: None,
                    message: None,
                }],
            },
            r#"{"type":"invoke_finished","invocation":3,"hosts":[{"session":1,"computer_name":"srv01","pipeline":4,"state":"completed"}]}"#,
        );
        check_server(ServerMessage::error(ErrorCode::BadMessage, "x"), r#"{"type":"error","code":"bad_message","message":"x"}"#);
    }

    /// The relay's messages read as serde's derive read them: fields in any order, unknown ones skipped, defaults for
    /// the `#[serde(default)]` ones (so each type's required fields are exactly those without).
    #[test]
    fn relay_messages_read_like_the_derive() {
        let read = |json: &str| serde_json::from_str::<ServerMessage>(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let info = SessionInfo {
            id: SessionId(1),
            name: "a".into(),
            computer_name: "srv".into(),
            transport: Transport::Ssh,
            state: SessionState::Opened,
            availability: Availability::Available,
            reason: None,
            prompt: None,
            configuration_name: None,
            instance_id: None,
            can_disconnect: false, idle_left_secs: None, run_left_secs: None
        };
        assert_eq!(
            read(r#"{"type":"session_changed","later":{"x":[1,2.5,null]},"session":{"transport":"ssh","name":"a","id":1,"computer_name":"srv","state":"opened","availability":"available","later":true}}"#),
            ServerMessage::SessionChanged { session: info }
        );
        assert_eq!(
            read(r#"{"type":"remote_shells","computer_name":"srv","shells":[{"shell_id":"0A","name":"R","state":"Disconnected","owner":"o","configuration_name":"c"}]}"#),
            ServerMessage::RemoteShells {
                computer_name: "srv".into(),
                shells: vec![RemoteShell {
                    shell_id: "0A".into(),
                    name: "R".into(),
                    state: "Disconnected".into(),
                    owner: "o".into(),
                    configuration_name: "c".into(),
                    client_ip: String::new(),
                    idle_timeout_secs: None,
                    commands: 0,
                    session: None,
                }],
            }
        );
        assert_eq!(
            read(r#"{"type":"history","pipelines":[{"session":1,"pipeline":2,"script":"gps","finished":false}],"invocations":[{"invocation":3,"script":"gps","throttle_limit":2,"sessions":[[1,"srv"]],"hosts":[{"session":1,"computer_name":"srv","state":"failed"}],"finished":false}]}"#),
            ServerMessage::History {
                pipelines: vec![PipelineRecord { session: SessionId(1), pipeline: PipelineId(2), script: "gps".into(), prompt: String::new(), invocation: None, finished: false }],
                invocations: vec![InvocationRecord {
                    invocation: InvocationId(3),
                    script: "gps".into(),
                    throttle_limit: 2,
                    sessions: vec![(SessionId(1), "srv".into())],
                    hosts: vec![InvokeHost { session: SessionId(1), computer_name: "srv".into(), pipeline: None, state: PipelineState::Failed, error: None, message: None }],
                    finished: false,
                }],
            }
        );
        assert_eq!(
            read(r#"{"type":"invoke_started","invocation":1,"sessions":[1],"throttle_limit":32}"#),
            ServerMessage::InvokeStarted { invocation: InvocationId(1), sessions: vec![SessionId(1)], throttle_limit: 32, script: String::new() }
        );
        assert_eq!(read(r#"{"type":"prompt_state"}"#), ServerMessage::PromptState { entered: None });
        assert_eq!(read(r#"{"type":"prompt_state","entered":null}"#), ServerMessage::PromptState { entered: None });
        assert_eq!(
            read(r#"{"type":"prompt_modules","modules":[{"name":"m","session":2,"commands":["New-remADUser"]}]}"#),
            ServerMessage::PromptModules { modules: vec![PromptModule { name: "m".into(), session: SessionId(2), commands: vec!["New-remADUser".into()] }] }
        );
        assert_eq!(
            read(r#"{"type":"completions","session":1,"input":"gp","cursor":2,"replacement_index":0,"replacement_length":2,"matches":[{"text":"gps","list_text":"gps","result_type":"Command"}]}"#),
            ServerMessage::Completions {
                session: SessionId(1),
                input: "gp".into(),
                cursor: 2,
                replacement_index: 0,
                replacement_length: 2,
                matches: vec![Completion { text: "gps".into(), list_text: "gps".into(), result_type: "Command".into(), tooltip: String::new() }],
            }
        );
        // A name with an escape is the same name.
        assert_eq!(read(r#"{"type":"hello","prot\u006fcol":1,"server":"0.1","user":"u"}"#), ServerMessage::Hello { protocol: 1, server: "0.1".into(), user: "u".into(), admin: false });
        // Errors in serde's words.
        for (json, error) in [
            (r#"{"type":"output","session":1,"pipeline":2,"seq":3}"#, "missing field `clixml`"),
            (r#"{"type":"pipeline_started","session":1,"session":2,"pipeline":3}"#, "duplicate field `session`"),
            (r#"{"type":"record","session":1,"pipeline":2,"seq":3,"kind":"loud","clixml":""}"#, "unknown variant `loud`, expected one of"),
            (r#"{"type":"sessions","sessions":[{"id":1}]}"#, "missing field `name`"),
            (r#"{"type":"sessions","sessions":["a"]}"#, "invalid type: string \"a\", expected struct SessionInfo"),
            (r#"{"type":"nope"}"#, "unknown variant `nope`, expected one of `hello`, `sessions`"),
        ] {
            let e = serde_json::from_str::<ServerMessage>(json).expect_err(json).to_string();
            assert!(e.contains(error), "{json}: {e}");
        }
    }
}
