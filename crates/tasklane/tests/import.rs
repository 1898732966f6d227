//! Importing the real Jira exports through `POST /imports`, the Kafka topic and the bulk
//! worker, checked against counts computed here straight from the files.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use common::{sample, HubClient, TestApp};
use regex::Regex;
use serde_json::Value;
use uuid::Uuid;

/// Tasks, non-empty comments, and distinct (comment, person) mentions in a Jira export.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    tasks: i64,
    comments: i64,
    mentions: i64,
}

fn count_in_file(path: &Path) -> Expected {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap();
    let headers = reader.headers().unwrap().clone();
    let key_column = headers.iter().position(|h| h == "Issue key").unwrap();
    let comment_columns: Vec<usize> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| *h == "Comment")
        .map(|(i, _)| i)
        .collect();
    let mention = Regex::new(r"\[~([^\]]+)\]").unwrap();
    let mut keys = HashSet::new();
    let (mut comments, mut mentions) = (0, 0);
    for record in reader.records() {
        let record = record.unwrap();
        keys.insert(record.get(key_column).unwrap().to_owned());
        for &column in &comment_columns {
            let cell = record.get(column).unwrap_or("").trim();
            if cell.is_empty() {
                continue;
            }
            comments += 1;
            let people: HashSet<&str> = mention
                .captures_iter(cell)
                .map(|c| c.get(1).unwrap().as_str())
                .collect();
            mentions += people.len() as i64;
        }
    }
    Expected {
        tasks: keys.len() as i64,
        comments,
        mentions,
    }
}

async fn count_in_database(app: &TestApp, tenant_id: Uuid) -> Expected {
    let count = |sql: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(tenant_id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    Expected {
        tasks: count("select count(*) from tasks where tenant_id = $1 and source = 'jira'").await,
        comments: count("select count(*) from comments where tenant_id = $1 and source = 'jira'")
            .await,
        mentions: count("select count(*) from mentions where tenant_id = $1").await,
    }
}

/// Imports a file twice, watching the first run's progress over the hub.
async fn import_twice_and_compare(file: &str) {
    let app = TestApp::spawn().await;
    let account = app.register("Importers").await;
    let path = sample(file);
    let expected = count_in_file(&path);

    let job_id = app.start_import(&account.token, &path).await;
    let mut hub = HubClient::connect(&app.hub_url(), &account.token, &[], &[job_id]).await;
    let finished = hub
        .wait_for(
            |line| line["event"] == "message" && line["envelope"]["data"]["progress"] == 100,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(finished["method"], "jobProgress");
    assert_eq!(finished["envelope"]["data"]["status"], "completed");
    hub.stop().await;

    let job = app.wait_for_job(&account.token, job_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["counts"]["created"], expected.tasks, "{job}");
    assert_eq!(job["counts"]["failed"], 0, "{job}");
    assert_eq!(count_in_database(&app, account.tenant_id).await, expected);

    let again = app.start_import(&account.token, &path).await;
    let job: Value = app.wait_for_job(&account.token, again).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["counts"]["created"], 0, "{job}");
    assert_eq!(job["counts"]["updated"], expected.tasks, "{job}");
    assert_eq!(count_in_database(&app, account.tenant_id).await, expected);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_server_export_matches_file() {
    import_twice_and_compare("jira-server-export.csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_346_columns_matches_file() {
    import_twice_and_compare("jira-346-cols.csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_huge_cell_matches_file() {
    import_twice_and_compare("jira-huge-cell.csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_source_keys_and_reports_bad_rows() {
    let app = TestApp::spawn().await;
    let account = app.register("Bad Rows").await;
    let file = tempfile_with(
        "Summary,Issue key,Issue id,Project key,Project name,Status,Priority,Created,Due Date\n\
         First,DPSA-31463,1,DPSA,Data,Open,High,10/Oct/25 10:08 PM,\n\
         ,DPSA-2,2,DPSA,Data,Open,High,10/Oct/25 10:08 PM,\n\
         Third,DPSA-3,3,DPSA,Data,Closed,Low,not a date,\n\
         Fourth,DPSA-4,4,DPSA,Data,In Progress,Medium,11/Oct/25 9:00 AM,\n",
    );
    let job_id = app.start_import(&account.token, file.path()).await;
    let job = app.wait_for_job(&account.token, job_id).await;

    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["counts"]["created"], 2, "{job}");
    assert_eq!(job["counts"]["failed"], 2, "{job}");
    let errors: Value = app
        .get(&account.token, &format!("/api/v1/jobs/{job_id}/errors"))
        .await
        .json()
        .await
        .unwrap();
    let rows: Vec<i64> = errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["row_number"].as_i64().unwrap())
        .collect();
    assert_eq!(rows, vec![2, 3], "{errors}");
    let keys: Vec<String> =
        sqlx::query_scalar("select key from tasks where tenant_id = $1 order by key")
            .bind(account.tenant_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(keys, vec!["DPSA-31463", "DPSA-4"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_turns_bad_values_into_row_errors() {
    let app = TestApp::spawn().await;
    let account = app.register("Bad Values").await;
    let file = tempfile_with(
        "Summary,Issue key,Project key,Due Date\n\
         Good,BV-1,BV,\n\
         Has \u{0} nul,BV-2,BV,\n\
         Repeat,BV-1,BV,\n\
         Huge number,BV-9223372036854775806,BV,\n\
         Last,BV-5,BV,\n",
    );
    let job_id = app.start_import(&account.token, file.path()).await;
    let job = app.wait_for_job(&account.token, job_id).await;

    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["counts"]["created"], 3, "{job}");
    assert_eq!(job["counts"]["failed"], 2, "{job}");
    let errors: Value = app
        .get(&account.token, &format!("/api/v1/jobs/{job_id}/errors"))
        .await
        .json()
        .await
        .unwrap();
    let rows: Vec<i64> = errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["row_number"].as_i64().unwrap())
        .collect();
    assert_eq!(rows, vec![2, 3], "{errors}");
    let keys: Vec<String> =
        sqlx::query_scalar("select key from tasks where tenant_id = $1 order by title")
            .bind(account.tenant_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    // The huge source number is not kept, so that task takes the next free number, 2.
    assert_eq!(keys, vec!["BV-1", "BV-2", "BV-5"]);
    app.stop().await;
}

/// Writes a temporary file that is deleted when the returned handle drops.
fn tempfile_with(contents: &str) -> TempFile {
    let path = std::env::temp_dir().join(format!("tasklane-{}.csv", Uuid::new_v4()));
    std::fs::write(&path, contents).unwrap();
    TempFile(path)
}

struct TempFile(std::path::PathBuf);

impl TempFile {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
