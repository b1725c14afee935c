//! psgate's PSRP engine and transports against real, independent peers: psrpcore's server role as a
//! local process (`pwsh -s` style) and behind a real OpenSSH sshd (the `powershell` subsystem).

use std::time::{Duration, Instant};

use psgate_shared::clixml::Value;
use psgate_shared::psrp::host::{HostMethod, HostResult, credential_result, prompt_result};
use psgate_shared::psrp::messages::{Command, ErrorRecordView, PipelineSpec, PipelineState, PoolState};
use psgate_shared::psrp::outofproc::ClientEvent;
use psgate_shared::psrp::pool::{Event, RecordKind};
use psgate_tests::{Client, Sshd};
use uuid::Uuid;

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| format!("{v:?}"))
}

/// Every emulated command, checked the same way whatever the transport.
async fn every_command(c: &mut Client) -> anyhow::Result<()> {
    let date = c.script("Get-Date").await?;
    assert_eq!(date.state, Some(PipelineState::Completed));
    let is_date = |v: &Value| matches!(v, Value::DateTime(_)) || v.as_object().and_then(|o| o.primitive()).is_some_and(|p| matches!(p, Value::DateTime(_)));
    assert!(date.output.len() == 1 && is_date(&date.output[0]), "{:?}", date.output);

    let procs = c.script("Get-Process").await?;
    assert!(!procs.output.is_empty());
    let first = procs.output[0].as_object().expect("a process object");
    assert!(first.is_type("System.Diagnostics.Process"), "{:?}", first.type_names);
    assert!(first.property("Name").and_then(Value::as_str).is_some() && first.property("Id").and_then(Value::as_i64).is_some());

    let table = c.script("$PSVersionTable").await?;
    assert!(format!("{:?}", table.output).contains("PSRemotingProtocolVersion"), "{:?}", table.output);

    let streams = c.script("Write-Warning careful; Write-Verbose chatty; Write-Debug detail; Write-Information info; Write-Host painted; Write-Output done").await?;
    assert_eq!(streams.state, Some(PipelineState::Completed));
    for kind in [RecordKind::Warning, RecordKind::Verbose, RecordKind::Debug, RecordKind::Information] {
        assert!(!streams.records(kind).is_empty(), "no {kind:?} record: {:?}", streams.records);
    }
    assert_eq!(streams.output.iter().map(text).collect::<Vec<_>>(), ["done"]);

    let progress = c.script("Write-Progress -Activity Copying -Status Halfway -PercentComplete 50").await?;
    assert!(!progress.records(RecordKind::Progress).is_empty(), "{:?}", progress.records);

    let soft = c.script("Write-Error oops").await?;
    assert_eq!(soft.state, Some(PipelineState::Completed), "a non-terminating error does not fail the pipeline");
    let error = ErrorRecordView::from_value(soft.records(RecordKind::Error)[0]);
    assert!(error.message.contains("oops"), "{error:?}");

    let hard = c.script("throw boom").await?;
    assert_eq!(hard.state, Some(PipelineState::Failed));
    let error = ErrorRecordView::from_value(hard.error.as_ref().expect("the terminating error"));
    assert!(error.message.contains("boom"), "{error:?}");

    let missing = c.script("Get-Nothing").await?;
    assert_eq!(missing.state, Some(PipelineState::Failed));
    let error = ErrorRecordView::from_value(missing.error.as_ref().expect("an error"));
    assert_eq!(error.fully_qualified_error_id, "CommandNotFoundException", "{error:?}");

    let spec = PipelineSpec { commands: vec![Command::named("Measure-Input")], no_input: false, add_to_history: false, is_nested: false };
    let measured = c.run(spec, vec![Value::string("a"), Value::I32(2), Value::string("c")]).await?;
    assert_eq!(measured.state, Some(PipelineState::Completed));
    assert!(measured.output.len() >= 3, "{:?}", measured.output);

    let many = c.script("Get-Objects -Count 1000").await?;
    assert_eq!(many.output.len(), 1000);
    Ok(())
}

/// Host calls: each kind answered, SecureStrings both ways (the key exchange happens on demand).
async fn host_calls(c: &mut Client) -> anyhow::Result<()> {
    c.host = Box::new(|call, pool| {
        Some(match call.method {
            HostMethod::ReadLine => HostResult::Value(Value::string("typed answer")),
            HostMethod::ReadLineAsSecureString => HostResult::Value(Value::SecureString(pool.secure_string("s3cret!").ok()?)),
            HostMethod::PromptForCredential1 | HostMethod::PromptForCredential2 => {
                HostResult::Value(credential_result("CONTOSO\\admin", pool.secure_string("P@ssw0rd").ok()?))
            }
            HostMethod::PromptForChoice => HostResult::Value(Value::I32(2)),
            HostMethod::Prompt => {
                let fields = call.fields();
                HostResult::Value(prompt_result(&fields.iter().map(|f| (f.name.clone(), Value::string(format!("value of {}", f.name)))).collect::<Vec<_>>()))
            }
            m if m.is_void() => return None,
            _ => HostResult::Error("not in this test".into()),
        })
    });
    let read = c.script("Read-Host").await?;
    assert_eq!(read.output.iter().map(text).collect::<Vec<_>>(), ["typed answer"]);
    // With -Prompt, PowerShell's Read-Host asks through Prompt with one field named after the prompt.
    let prompted = c.script("Read-Host -Prompt Name").await?;
    assert_eq!(prompted.output.iter().map(text).collect::<Vec<_>>(), ["value of Name"]);
    let secure = c.script("Read-Host -AsSecureString").await?;
    assert_eq!(secure.output.iter().map(text).collect::<Vec<_>>(), ["secure:s3cret!"], "the server decrypted what we encrypted");
    let cred = c.script("Get-Credential -UserName admin").await?;
    let shown: Vec<String> = cred.output.iter().map(text).collect();
    assert!(shown.iter().any(|s| s.contains("CONTOSO\\admin")) && shown.iter().any(|s| s == "password:P@ssw0rd"), "{shown:?}");
    let choice = c.script("Test-Choice").await?;
    assert_eq!(choice.output.iter().map(|v| v.as_i64()).collect::<Vec<_>>(), [Some(2)]);
    let call = choice.host_calls.iter().find(|c| c.method == HostMethod::PromptForChoice).expect("a choice call");
    assert_eq!(call.choices().0.len(), 3);
    let prompt = c.script("Test-Prompt").await?;
    assert!(format!("{:?}", prompt.output).contains("value of"), "{:?}", prompt.output);
    // And the other way: a SecureString from the server, decrypted with the exchanged session key.
    let from_server = c.script("ConvertTo-SecureString -String 'server secret' -AsPlainText -Force").await?;
    let Some(Value::SecureString(cipher)) = from_server.output.first().map(|v| v.as_object().and_then(|o| o.primitive()).unwrap_or(v).clone()) else {
        panic!("a SecureString: {:?}", from_server.output);
    };
    let plain = c.session.with(move |s| s.pool().reveal(&cipher)).await??;
    assert_eq!(plain, "server secret");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn local_process_runs_every_command() -> anyhow::Result<()> {
    let mut c = Client::local().await?;
    every_command(&mut c).await?;
    host_calls(&mut c).await?;
    c.close().await
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_runs_every_command_with_key_and_password() -> anyhow::Result<()> {
    let sshd = Sshd::start(true)?;
    let mut c = Client::ssh(&sshd.key_options()).await?;
    every_command(&mut c).await?;
    host_calls(&mut c).await?;
    c.close().await?;
    let mut p = Client::ssh(&sshd.password_options(&sshd.password())).await?;
    let date = p.script("Get-Date").await?;
    assert_eq!(date.state, Some(PipelineState::Completed));
    p.close().await
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_of_several_mib_cross_in_32_kib_fragments() -> anyhow::Result<()> {
    let mut c = Client::local().await?;
    let big: String = "0123456789abcdef".repeat(5 << 16); // 5 MiB
    let spec = PipelineSpec { commands: vec![Command::named("Measure-Input")], no_input: false, add_to_history: false, is_nested: false };
    let out = c.run(spec, vec![Value::string(big.as_str())]).await?;
    assert_eq!(out.state, Some(PipelineState::Completed));
    assert!(out.output.iter().any(|v| v.as_str() == Some(big.as_str())), "the 5 MiB string came back whole");
    c.close().await
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_in_the_middle_of_output() -> anyhow::Result<()> {
    let mut c = Client::local().await?;
    let id = Uuid::new_v4();
    let spec = PipelineSpec::script("Test-Long -Seconds 60");
    c.session.with(move |s| s.create_pipeline(id, &spec)).await??;
    let mut outputs = 0;
    let started = Instant::now();
    loop {
        match c.next().await? {
            ClientEvent::Psrp(Event::Output { .. }) => {
                outputs += 1;
                if outputs == 3 {
                    c.session.with(move |s| s.stop(id)).await?;
                }
            }
            ClientEvent::Psrp(Event::PipelineState { state, error, .. }) if state.is_terminal() => {
                assert_eq!(state, PipelineState::Stopped);
                let e = ErrorRecordView::from_value(&error.expect("PowerShell reports the stop as an error record"));
                assert!(e.fully_qualified_error_id.contains("PipelineStopped") || e.message.contains("stopped"), "{e:?}");
                break;
            }
            _ => {}
        }
    }
    assert!(started.elapsed() < Duration::from_secs(30), "stopped long before the command would have ended");
    c.close().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_peer_breaks_the_session_within_a_second() -> anyhow::Result<()> {
    let mut c = Client::local().await?;
    let id = Uuid::new_v4();
    let spec = PipelineSpec::script("Test-Long -Seconds 60");
    c.session.with(move |s| s.create_pipeline(id, &spec)).await??;
    loop {
        if let ClientEvent::Psrp(Event::Output { .. }) = c.next().await? {
            break;
        }
    }
    let mut process = c.process.take().expect("a local process");
    process.start_kill()?;
    let killed = Instant::now();
    let (mut pipeline_failed, mut broken) = (None, None);
    while broken.is_none() {
        match c.next().await? {
            ClientEvent::Psrp(Event::PipelineState { state: PipelineState::Failed, error, .. }) => pipeline_failed = error,
            ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken, error }) => broken = Some(error),
            _ => {}
        }
    }
    assert!(killed.elapsed() < Duration::from_secs(1), "broken after {:?}", killed.elapsed());
    let why = ErrorRecordView::from_value(&broken.flatten().expect("a reason")).message;
    assert!(why.contains("closed the connection"), "{why}");
    assert!(pipeline_failed.is_some(), "the running pipeline failed with the session");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn command_metadata_for_implicit_remoting() -> anyhow::Result<()> {
    let mut c = Client::local().await?;
    let id = Uuid::new_v4();
    c.session.with(move |s| s.pool_mut().get_command_metadata(id, &["*-ADUser"])).await??;
    let mut values = Vec::new();
    loop {
        match c.next().await? {
            ClientEvent::Psrp(Event::Output { pipeline, value }) if pipeline == id => values.push(value),
            ClientEvent::Psrp(Event::PipelineState { pipeline, state, .. }) if pipeline == id && state.is_terminal() => break,
            _ => {}
        }
    }
    let count = values[0].as_object().and_then(|o| o.property("Count")).and_then(Value::as_i64);
    assert_eq!(count, Some(3), "{:?}", values[0]);
    let names: Vec<String> = values[1..].iter().filter_map(|v| v.as_object()?.property("Name")?.as_str().map(str::to_owned)).collect();
    assert_eq!(names, ["Get-ADUser", "New-ADUser", "Set-ADUser"]);
    let params = values[2].as_object().and_then(|o| o.property("Parameters")).map(|p| format!("{p:?}")).unwrap_or_default();
    assert!(params.contains("SamAccountName"), "New-ADUser's parameters: {params}");
    c.close().await
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_operations_and_the_remote_version_table() -> anyhow::Result<()> {
    let mut c = Client::local().await?;
    let table = c.session.with(|s| s.pool().ps_version_table().cloned()).await?.expect("APPLICATION_PRIVATE_DATA carries $PSVersionTable");
    let text = format!("{table:?}");
    assert!(text.contains("PSVersion") && text.contains("PSEdition"), "{text}");

    let max = c.session.with(|s| s.pool_mut().set_max_runspaces(4)).await??;
    let min = c.session.with(|s| s.pool_mut().set_min_runspaces(2)).await??;
    let available = c.session.with(|s| s.pool_mut().get_available_runspaces()).await??;
    let reset = c.session.with(|s| s.pool_mut().reset_runspace_state()).await??;
    let mut answers = std::collections::HashMap::new();
    while answers.len() < 4 {
        if let ClientEvent::Psrp(Event::Availability { call_id, value }) = c.next().await? {
            answers.insert(call_id, value);
        }
    }
    assert_eq!(answers[&max].as_bool(), Some(true));
    assert_eq!(answers[&min].as_bool(), Some(true));
    assert!(answers[&available].as_i64().is_some_and(|n| n >= 1), "{:?}", answers[&available]);
    assert_eq!(answers[&reset].as_bool(), Some(true));
    c.close().await
}
