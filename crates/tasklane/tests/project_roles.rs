//! Project roles against the running application: they narrow what the tenant role allows
//! in one project and never widen it.
//!
//! Each test names the OWASP ASVS 5.0 requirement it covers; docs/asvs-coverage.md lists
//! them all.

mod common;

use common::{Account, TestApp};
use serde_json::{json, Value};
use uuid::Uuid;

async fn put_role(
    app: &TestApp,
    token: &str,
    project_id: Uuid,
    user_id: Uuid,
    role: &str,
) -> reqwest::StatusCode {
    app.client
        .put(app.url(&format!("/api/v1/projects/{project_id}/roles/{user_id}")))
        .bearer_auth(token)
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap()
        .status()
}

async fn create_project(app: &TestApp, owner: &Account, key: &str) -> Uuid {
    let response = app
        .post_json(
            &owner.token,
            "/api/v1/projects",
            json!({ "key": key, "name": key }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let project: Value = response.json().await.unwrap();
    project["id"].as_str().unwrap().parse().unwrap()
}

async fn create_task_in(app: &TestApp, account: &Account, project_id: Uuid) -> reqwest::Response {
    app.post_json(
        &account.token,
        "/api/v1/tasks",
        json!({ "project_id": project_id, "title": "Scoped" }),
    )
    .await
}

/// V8.2.1: a tenant member made a project viewer reads that project but writes nothing in
/// it (tasks, changes, comments), and still writes in other projects.
#[tokio::test]
async fn project_viewer_role_narrows_member() {
    let app = TestApp::spawn().await;
    let owner = app.register("Narrowing").await;
    let member = app.add_member(&owner, "member").await;
    let task = app.create_task(&owner, "Owned").await;
    let task_id = task["id"].as_str().unwrap();

    let status = put_role(
        &app,
        &owner.token,
        owner.project_id,
        member.user_id,
        "viewer",
    )
    .await;
    assert_eq!(status, 200);

    let read = app
        .get(&member.token, &format!("/api/v1/tasks/{task_id}"))
        .await;
    assert_eq!(read.status(), 200, "a project viewer reads");
    let created = create_task_in(&app, &member, owner.project_id).await;
    assert_eq!(created.status(), 403);
    let patched = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{task_id}")))
        .bearer_auth(&member.token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "title": "Changed" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 403);
    let commented = app
        .post_json(
            &member.token,
            &format!("/api/v1/tasks/{task_id}/comments"),
            json!({ "body": "hello" }),
        )
        .await;
    assert_eq!(commented.status(), 403);

    let other_project = create_project(&app, &owner, "OTHER").await;
    let elsewhere = create_task_in(&app, &member, other_project).await;
    assert_eq!(
        elsewhere.status(),
        201,
        "other projects keep the tenant role"
    );

    let removed = app
        .client
        .delete(app.url(&format!(
            "/api/v1/projects/{}/roles/{}",
            owner.project_id, member.user_id
        )))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let created = create_task_in(&app, &member, owner.project_id).await;
    assert_eq!(
        created.status(),
        201,
        "without a project role the tenant role applies"
    );
    app.stop().await;
}

/// V8.2.1: a project role never widens the tenant role, and only owners, admins and the
/// project's leads assign project roles.
#[tokio::test]
async fn project_role_never_widens() {
    let app = TestApp::spawn().await;
    let owner = app.register("Widening").await;
    let viewer = app.add_member(&owner, "viewer").await;
    let member = app.add_member(&owner, "member").await;

    assert_eq!(
        put_role(&app, &owner.token, owner.project_id, viewer.user_id, "lead").await,
        200
    );
    let created = create_task_in(&app, &viewer, owner.project_id).await;
    assert_eq!(created.status(), 403, "a tenant viewer who leads a project");
    assert_eq!(
        put_role(
            &app,
            &viewer.token,
            owner.project_id,
            member.user_id,
            "viewer"
        )
        .await,
        403,
        "a tenant viewer assigns no roles"
    );

    assert_eq!(
        put_role(
            &app,
            &member.token,
            owner.project_id,
            member.user_id,
            "lead"
        )
        .await,
        403,
        "a member cannot make themselves lead"
    );
    assert_eq!(
        put_role(&app, &owner.token, owner.project_id, member.user_id, "lead").await,
        200
    );
    assert_eq!(
        put_role(
            &app,
            &member.token,
            owner.project_id,
            viewer.user_id,
            "member"
        )
        .await,
        200,
        "a project lead with a writing tenant role assigns roles"
    );
    let other_project = Uuid::now_v7();
    assert_eq!(
        put_role(&app, &member.token, other_project, viewer.user_id, "member").await,
        404
    );
    app.stop().await;
}

/// V8.4.1: project roles stay inside their tenant: another tenant's project and people
/// outside the tenant are not found.
#[tokio::test]
async fn project_roles_stay_in_tenant() {
    let app = TestApp::spawn().await;
    let owner = app.register("Home").await;
    let stranger = app.register("Elsewhere").await;

    assert_eq!(
        put_role(
            &app,
            &stranger.token,
            owner.project_id,
            stranger.user_id,
            "lead"
        )
        .await,
        404,
        "another tenant's project"
    );
    assert_eq!(
        put_role(
            &app,
            &owner.token,
            owner.project_id,
            stranger.user_id,
            "member"
        )
        .await,
        404,
        "a person outside the tenant"
    );
    assert_eq!(
        put_role(&app, &owner.token, owner.project_id, owner.user_id, "admin").await,
        422,
        "an unknown project role"
    );
    let listed = app
        .get(
            &stranger.token,
            &format!("/api/v1/projects/{}/roles", owner.project_id),
        )
        .await;
    assert_eq!(listed.status(), 404);
    app.stop().await;
}

/// V8.2.1: an import whose file names a project by key is held to the importer's project
/// role there: the rows for a project where they are a viewer fail, the others import.
#[tokio::test]
async fn import_respects_project_role() {
    let app = TestApp::spawn().await;
    let owner = app.register("Import roles").await;
    let member = app.add_member(&owner, "member").await;
    let locked = create_project(&app, &owner, "LOCK").await;
    create_project(&app, &owner, "OPEN").await;
    assert_eq!(
        put_role(&app, &owner.token, locked, member.user_id, "viewer").await,
        200
    );

    let path = std::env::temp_dir().join(format!("tasklane-roles-{}.csv", Uuid::new_v4()));
    std::fs::write(
        &path,
        "Summary,Issue key,Project key\nLocked one,LOCK-1,LOCK\nOpen one,OPEN-1,OPEN\n",
    )
    .unwrap();
    let job_id = app.start_import(&member.token, &path).await;
    let job = app.wait_for_job(&member.token, job_id).await;
    let _ = std::fs::remove_file(&path);

    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["counts"]["created"], 1, "{job}");
    assert_eq!(job["counts"]["failed"], 1, "{job}");
    let keys: Vec<String> =
        sqlx::query_scalar("select key from tasks where tenant_id = $1 order by key")
            .bind(owner.tenant_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(keys, vec!["OPEN-1"]);
    app.stop().await;
}
