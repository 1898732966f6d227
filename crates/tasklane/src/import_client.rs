//! `tasklane import`: uploads a file to a running API and follows the job to its end.
//!
//! The token comes from `TASKLANE_TOKEN`, apart from the typed settings, since it belongs to
//! the person running the command rather than to the deployment.

use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio_util::io::ReaderStream;

use crate::cli::ImportArgs;

const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let token = std::env::var("TASKLANE_TOKEN")
        .context("TASKLANE_TOKEN is not set; log in with POST /api/v1/auth/login and export its access_token")?;
    let client = reqwest::Client::new();
    let base = args.api_url.trim_end_matches('/').to_owned();

    // Checked first: a server that rejects the token closes the connection mid-upload,
    // which would otherwise surface as a broken pipe instead of the real reason.
    read_json(
        client
            .get(format!("{base}/api/v1/projects?limit=1"))
            .bearer_auth(&token)
            .send()
            .await?,
    )
    .await
    .context("checking TASKLANE_TOKEN against the API")?;

    let project_id = match &args.project {
        Some(key) => Some(find_project(&client, &base, &token, key).await?),
        None => None,
    };

    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().await?.len();
    let filename = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("upload.csv")
        .to_owned();
    let body = reqwest::Body::wrap_stream(ReaderStream::new(file));
    let mut form = Form::new()
        .part(
            "file",
            Part::stream_with_length(body, size)
                .file_name(filename)
                .mime_str("text/csv")?,
        )
        .text("format", args.format.clone());
    if let Some(id) = project_id {
        form = form.text("project_id", id);
    }
    let response = client
        .post(format!("{base}/api/v1/imports"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .with_context(|| format!("sending the file to {base}"))?;
    let queued = read_json(response).await?;
    let job_id = queued["job_id"]
        .as_str()
        .context("the API returned no job_id")?
        .to_owned();
    println!("import queued: job {job_id}");
    if args.no_wait {
        return Ok(());
    }
    follow_job(&client, &base, &token, &job_id).await
}

async fn find_project(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
) -> anyhow::Result<String> {
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/projects?limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = read_json(client.get(url).bearer_auth(token).send().await?).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if let Some(project) = items.iter().find(|p| p["key"] == key) {
            return Ok(project["id"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => bail!("no project with key {key:?}; create it first or omit --project"),
        }
    }
}

async fn follow_job(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    job_id: &str,
) -> anyhow::Result<()> {
    let mut last_progress = -1;
    loop {
        let job = read_json(
            client
                .get(format!("{base}/api/v1/jobs/{job_id}"))
                .bearer_auth(token)
                .send()
                .await?,
        )
        .await?;
        let progress = job["progress"].as_i64().unwrap_or(0);
        if progress != last_progress {
            println!("{}: {progress}%", job["status"].as_str().unwrap_or("?"));
            last_progress = progress;
        }
        match job["status"].as_str() {
            Some("completed") => {
                let counts = &job["counts"];
                println!(
                    "completed: {} rows, {} created, {} updated, {} failed",
                    counts["total"], counts["created"], counts["updated"], counts["failed"]
                );
                if counts["failed"].as_i64().unwrap_or(0) > 0 {
                    print_errors(client, base, token, job_id).await?;
                }
                return Ok(());
            }
            Some("failed") | Some("cancelled") => {
                bail!("import {}: {}", job["status"], job["error"])
            }
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

async fn print_errors(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    job_id: &str,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/jobs/{job_id}/errors?limit=20");
    let page = read_json(client.get(url).bearer_auth(token).send().await?).await?;
    for error in page["items"].as_array().into_iter().flatten() {
        println!(
            "  row {}, column {}: {}",
            error["row_number"], error["column"], error["reason"]
        );
    }
    if !page["next_cursor"].is_null() {
        println!("  more errors: GET /api/v1/jobs/{job_id}/errors");
    }
    Ok(())
}

/// Returns the JSON body of a successful response, or the problem's detail as the error.
async fn read_json(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "the API returned {status}: {}",
            body["detail"].as_str().unwrap_or("no detail")
        );
    }
    Ok(body)
}
