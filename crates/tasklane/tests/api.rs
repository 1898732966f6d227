//! The REST API's contract: errors as problem+json, optimistic concurrency, pagination,
//! idempotency keys and tenant isolation.

mod common;

use common::TestApp;
use serde_json::{json, Value};

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_problem_json() {
    let app = TestApp::spawn().await;
    let account = app.register("Errors").await;

    let unauthenticated = app
        .client
        .get(app.url("/api/v1/tasks"))
        .send()
        .await
        .unwrap();
    problem(unauthenticated, 401).await;

    let malformed = app
        .client
        .post(app.url("/api/v1/tasks"))
        .bearer_auth(&account.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(malformed, 400).await;

    let missing_title = app
        .post_json(
            &account.token,
            "/api/v1/tasks",
            json!({ "project_id": account.project_id }),
        )
        .await;
    let body = problem(missing_title, 422).await;
    assert!(body["detail"].as_str().unwrap().contains("title"), "{body}");

    let bad_priority = app
        .post_json(
            &account.token,
            "/api/v1/tasks",
            json!({ "project_id": account.project_id, "title": "x", "priority": "asap" }),
        )
        .await;
    problem(bad_priority, 422).await;

    let unknown_task = app
        .get(
            &account.token,
            "/api/v1/tasks/0190aaaa-0000-7000-8000-000000000000",
        )
        .await;
    problem(unknown_task, 404).await;

    let bad_id = app.get(&account.token, "/api/v1/tasks/not-a-uuid").await;
    problem(bad_id, 400).await;

    let bad_limit = app.get(&account.token, "/api/v1/tasks?limit=0").await;
    problem(bad_limit, 400).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_match_is_rejected() {
    let app = TestApp::spawn().await;
    let account = app.register("Versions").await;
    let task = app.create_task(&account, "Versioned").await;
    let path = app.url(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap()));

    let first = app
        .client
        .patch(&path)
        .bearer_auth(&account.token)
        .header("if-match", "\"1\"")
        .json(&json!({ "status": "In Progress" }))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let updated: Value = first.json().await.unwrap();
    assert_eq!(updated["status_category"], "in_progress");

    let stale = app
        .client
        .patch(&path)
        .bearer_auth(&account.token)
        .header("if-match", "\"1\"")
        .json(&json!({ "title": "Lost update" }))
        .send()
        .await
        .unwrap();
    problem(stale, 412).await;

    let unknown_status = app
        .client
        .patch(&path)
        .bearer_auth(&account.token)
        .json(&json!({ "status": "Nowhere" }))
        .send()
        .await
        .unwrap();
    problem(unknown_status, 422).await;

    let read_only = app
        .client
        .patch(&path)
        .bearer_auth(&account.token)
        .json(&json!({ "version": 9 }))
        .send()
        .await
        .unwrap();
    problem(read_only, 422).await;

    let cleared = app
        .client
        .patch(&path)
        .bearer_auth(&account.token)
        .json(&json!({ "description": "text", "due_date": "2026-12-31" }))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    let cleared = app
        .client
        .patch(&path)
        .bearer_auth(&account.token)
        .json(&json!({ "description": null }))
        .send()
        .await
        .unwrap();
    let body: Value = cleared.json().await.unwrap();
    assert_eq!(body["description"], Value::Null);
    assert_eq!(body["due_date"], "2026-12-31");
    assert_eq!(body["version"], 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_pages_with_cursor() {
    let app = TestApp::spawn().await;
    let account = app.register("Pages").await;
    for n in 0..5 {
        app.create_task(&account, &format!("Task {n}")).await;
    }

    let mut titles = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/tasks?limit=2&project={}", account.project_id);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app.get(&account.token, &path).await.json().await.unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            titles.push(item["title"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        titles,
        (0..5).map(|n| format!("Task {n}")).collect::<Vec<_>>()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_first_response() {
    let app = TestApp::spawn().await;
    let account = app.register("Retries").await;
    let body = json!({ "project_id": account.project_id, "title": "Once" });
    let send = |body: Value| {
        app.client
            .post(app.url("/api/v1/tasks"))
            .bearer_auth(&account.token)
            .header("idempotency-key", "key-1")
            .json(&body)
            .send()
    };

    let first: Value = send(body.clone()).await.unwrap().json().await.unwrap();
    let second = send(body.clone()).await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);

    let different = send(json!({ "project_id": account.project_id, "title": "Other" }))
        .await
        .unwrap();
    problem(different, 422).await;
    let count: i64 = sqlx::query_scalar("select count(*) from tasks where tenant_id = $1")
        .bind(account.tenant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_each_other() {
    let app = TestApp::spawn().await;
    let owner = app.register("Alpha").await;
    let stranger = app.register("Beta").await;
    let task = app.create_task(&owner, "Alpha only").await;
    let task_id = task["id"].as_str().unwrap();

    problem(
        app.get(&stranger.token, &format!("/api/v1/tasks/{task_id}"))
            .await,
        404,
    )
    .await;
    problem(
        app.get(
            &stranger.token,
            &format!("/api/v1/tasks/{task_id}/comments"),
        )
        .await,
        404,
    )
    .await;
    let comment = app
        .post_json(
            &stranger.token,
            &format!("/api/v1/tasks/{task_id}/comments"),
            json!({ "body": "hi" }),
        )
        .await;
    problem(comment, 404).await;
    let patch = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{task_id}")))
        .bearer_auth(&stranger.token)
        .json(&json!({ "title": "mine" }))
        .send()
        .await
        .unwrap();
    problem(patch, 404).await;
    let into_other_project = app
        .post_json(
            &stranger.token,
            "/api/v1/tasks",
            json!({ "project_id": owner.project_id, "title": "x" }),
        )
        .await;
    problem(into_other_project, 422).await;

    let listed: Value = app
        .get(&stranger.token, "/api/v1/tasks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
    let projects: Value = app
        .get(&stranger.token, "/api/v1/projects")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(projects["items"].as_array().unwrap().len(), 1);
    assert_eq!(projects["items"][0]["id"], stranger.project_id.to_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_imports_are_rejected_clearly() {
    let app = TestApp::spawn().await;
    let account = app.register("Uploads").await;
    let upload = |form: reqwest::multipart::Form| {
        app.client
            .post(app.url("/api/v1/imports"))
            .bearer_auth(&account.token)
            .multipart(form)
            .send()
    };

    let no_file = upload(reqwest::multipart::Form::new().text("format", "jira"))
        .await
        .unwrap();
    problem(no_file, 422).await;

    let part = || {
        reqwest::multipart::Part::bytes(b"Summary,Issue key\nA,B-1\n".to_vec()).file_name("a.csv")
    };
    let bad_format = upload(
        reqwest::multipart::Form::new()
            .part("file", part())
            .text("format", "xlsx"),
    )
    .await
    .unwrap();
    problem(bad_format, 422).await;

    let empty = reqwest::multipart::Part::bytes(Vec::new()).file_name("a.csv");
    problem(
        upload(reqwest::multipart::Form::new().part("file", empty))
            .await
            .unwrap(),
        422,
    )
    .await;

    let headerless =
        reqwest::multipart::Part::bytes(b"just,some\nwords,here\n".to_vec()).file_name("a.csv");
    let accepted = upload(reqwest::multipart::Form::new().part("file", headerless))
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let job_id = accepted.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let job = app.wait_for_job(&account.token, job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("Summary"), "{job}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["postgres"], "ok");
    assert_eq!(ready["checks"]["rabbitmq"], "ok", "{ready}");
    assert_eq!(ready["checks"]["kafka"], "ok", "{ready}");
    let account = app.register("Metrics").await;
    app.get(&account.token, "/api/v1/tasks").await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tasklane_http_requests_total"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_get_problems() {
    let app = TestApp::spawn().await;
    let account = app.register("Odd").await;

    let nul_title = app
        .post_json(
            &account.token,
            "/api/v1/tasks",
            json!({ "project_id": account.project_id, "title": "a\u{0}b" }),
        )
        .await;
    problem(nul_title, 422).await;
    problem(app.get(&account.token, "/api/v1/nowhere").await, 404).await;
    let wrong_method = app
        .client
        .delete(app.url("/api/v1/projects"))
        .bearer_auth(&account.token)
        .send()
        .await
        .unwrap();
    problem(wrong_method, 405).await;

    let task = app.create_task(&account, "Still").await;
    let path = app.url(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap()));
    let empty = app
        .client
        .patch(&path)
        .bearer_auth(&account.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.json::<Value>().await.unwrap()["version"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_accepts_any_bearer_case() {
    let app = TestApp::spawn().await;
    let account = app.register("Cases").await;
    let body = json!({ "project_id": account.project_id, "title": "Once" });
    for scheme in ["Bearer", "BEARER", "bearer"] {
        let response = app
            .client
            .post(app.url("/api/v1/tasks"))
            .header("authorization", format!("{scheme} {}", account.token))
            .header("idempotency-key", "same")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "scheme {scheme}");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from tasks where tenant_id = $1")
        .bind(account.tenant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    app.stop().await;
}
