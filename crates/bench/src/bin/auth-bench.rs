//! Benchmark of the auth layer, each figure beside the raw crate call it wraps, in one run:
//!
//! 1. Access-token verification per second: `jsonwebtoken::decode` with the same key and
//!    checks, `TokenIssuer::verify_uncached`, and `TokenIssuer::verify` on a repeated
//!    token (the in-process cache of verified tokens).
//! 2. Password verification latency: the raw `argon2` call, then `verify_password` for a
//!    known account and for an unknown one (the dummy hash). `POST /auth/login` goes
//!    through the real router with a known e-mail and the right password, a known e-mail
//!    and a wrong password, and an unknown e-mail.
//! 3. What the auth layer adds to a cached task read. Two routes on the real router read
//!    the same task JSON from Redis: one behind the API's `Caller` extractor (token,
//!    revocation version, membership, role) and one without. The API's own
//!    `GET /tasks/{id}`, which reads PostgreSQL, is shown beside them.
//!
//! Requests go through the router in process (`tower::ServiceExt::oneshot`), so sockets add
//! no noise. The program creates and drops its own database on the PostgreSQL server of
//! `TASKLANE_DATABASE__URL`, and uses keys under its own prefix in the Redis of
//! `TASKLANE_REDIS__URL`. Each measurement runs in alternating rounds and reports the
//! median round, because a shared machine's speed drifts during a run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use axum::body::Body;
use axum::extract::{FromRequestParts as _, Path, State};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use clap::Parser;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use redis::aio::ConnectionManager;
use redis::AsyncCommands as _;
use serde_json::{json, Value};
use tasklane_api::{AppState, Caller};
use tasklane_auth::keys::{generate_private_key_pem, parse_private_key_pem, KeySet};
use tasklane_auth::{hash_password, verify_password, AccessClaims, Action, TokenIssuer};
use tasklane_cache::Cache;
use tasklane_config::Settings;
use tasklane_store::access_cache::AccessCache;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use uuid::Uuid;

const PASSWORD: &str = "bench-password-4f1c9e";

#[derive(Parser)]
#[command(about = "Measures token verification, login latency and the auth layer's cost")]
struct Args {
    /// Token verifications per round.
    #[arg(long, default_value_t = 20_000)]
    verifications: u32,
    /// Password verifications per round, for each variant.
    #[arg(long, default_value_t = 5)]
    logins: u32,
    /// Task reads per round, for each route.
    #[arg(long, default_value_t = 4_000)]
    reads: u32,
    /// Rounds per measurement. The median round is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("auth benchmark, {} rounds, median round shown", args.rounds);
    bench_token_verification(&args)?;
    bench_password_verification(&args)?;

    let app = BenchApp::start().await?;
    let outcome = bench_requests(&args, &app).await;
    app.stop().await;
    outcome
}

/// Runs each variant once per round, in turn, and returns each variant's median result.
fn median_rounds<const N: usize>(rounds: usize, mut run: impl FnMut() -> [f64; N]) -> [f64; N] {
    median_of((0..rounds).map(|_| run()).collect())
}

/// Returns each variant's median over the rounds.
fn median_of<const N: usize>(mut samples: Vec<[f64; N]>) -> [f64; N] {
    let mut medians = [0.0; N];
    for (variant, median) in medians.iter_mut().enumerate() {
        samples.sort_by(|a, b| a[variant].total_cmp(&b[variant]));
        *median = samples[samples.len() / 2][variant];
    }
    medians
}

fn per_second(iterations: u32, elapsed: Duration) -> f64 {
    f64::from(iterations) / elapsed.as_secs_f64()
}

fn bench_token_verification(args: &Args) -> anyhow::Result<()> {
    let signing = parse_private_key_pem(&generate_private_key_pem())?;
    let issuer = TokenIssuer::new(
        KeySet::new(&signing, &[]),
        "tasklane",
        "tasklane-api",
        Duration::from_secs(900),
    );
    let token = issuer.issue(Uuid::now_v7(), Uuid::now_v7(), 0)?;

    // The same checks as the issuer: EdDSA only, issuer, audience, required claims, leeway.
    let raw_key = DecodingKey::from_ed_der(signing.verifying_key().as_bytes());
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["tasklane"]);
    validation.set_audience(&["tasklane-api"]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 5;
    ensure!(
        jsonwebtoken::decode::<AccessClaims>(&token, &raw_key, &validation).is_ok(),
        "the raw decode rejects the issued token"
    );

    let n = args.verifications;
    let [raw, uncached, cached] = median_rounds(args.rounds, || {
        let started = Instant::now();
        for _ in 0..n {
            let claims = jsonwebtoken::decode::<AccessClaims>(&token, &raw_key, &validation);
            std::hint::black_box(claims.is_ok());
        }
        let raw = per_second(n, started.elapsed());
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(issuer.verify_uncached(&token).is_ok());
        }
        let uncached = per_second(n, started.elapsed());
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(issuer.verify(&token).is_ok());
        }
        let cached = per_second(n, started.elapsed());
        [raw, uncached, cached]
    });
    println!();
    println!("access-token verification, one thread ({n} per round)");
    println!("  jsonwebtoken::decode (raw crate)   {raw:>12.0} /s");
    println!(
        "  TokenIssuer::verify_uncached       {uncached:>12.0} /s   {:.3}x raw",
        uncached / raw
    );
    println!(
        "  TokenIssuer::verify, cached        {cached:>12.0} /s   {:.1}x raw",
        cached / raw
    );
    Ok(())
}

fn bench_password_verification(args: &Args) -> anyhow::Result<()> {
    let stored = hash_password(PASSWORD)?;
    let parsed = PasswordHash::new(&stored).map_err(|error| anyhow::anyhow!("{error}"))?;
    // The parameters the stored hash carries (argon2id, 19 MiB, 2 iterations, 1 lane).
    let raw = argon2::Argon2::default();
    ensure!(raw.verify_password(PASSWORD.as_bytes(), &parsed).is_ok());

    let n = args.logins;
    let millis_per_call = |started: Instant| started.elapsed().as_secs_f64() * 1e3 / f64::from(n);
    let [raw_ms, known_ms, unknown_ms] = median_rounds(args.rounds, || {
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(raw.verify_password(PASSWORD.as_bytes(), &parsed).is_ok());
        }
        let raw_ms = millis_per_call(started);
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(verify_password(PASSWORD, Some(&stored)));
        }
        let known_ms = millis_per_call(started);
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(verify_password(PASSWORD, None));
        }
        let unknown_ms = millis_per_call(started);
        [raw_ms, known_ms, unknown_ms]
    });
    println!();
    println!("password verification, argon2id 19 MiB / 2 iterations / 1 lane ({n} per round)");
    println!("  argon2 verify_password (raw crate) {raw_ms:>9.1} ms");
    println!(
        "  verify_password, known account     {known_ms:>9.1} ms   {:.3}x raw",
        known_ms / raw_ms
    );
    println!(
        "  verify_password, unknown account   {unknown_ms:>9.1} ms   {:.3}x known",
        unknown_ms / known_ms
    );
    Ok(())
}

/// The API's router on a database of its own, with two extra routes for the cached read.
struct BenchApp {
    router: Router,
    state: AppState,
    admin_url: String,
    database: String,
    redis: ConnectionManager,
    prefix: String,
    cancel: CancellationToken,
}

impl BenchApp {
    async fn start() -> anyhow::Result<Self> {
        let admin_url = std::env::var("TASKLANE_DATABASE__URL")
            .unwrap_or_else(|_| "postgres://tasklane:tasklane@127.0.0.1:5432/tasklane".to_owned());
        let redis_url = std::env::var("TASKLANE_REDIS__URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let suffix = Uuid::new_v4().simple().to_string();
        let database = format!("tasklane_bench_{suffix}");
        let admin = tasklane_store::connect(&admin_url, 1)
            .await
            .context("connecting to PostgreSQL; run scripts/services-up")?;
        sqlx::query(&format!("create database {database}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .context("database URL ends in /NAME")?;
        let database_url = format!("{base}/{database}");

        let prefix = format!("bench{}", &suffix[..12]);
        let settings = Settings::with_overrides(json!({
            "database": { "url": database_url },
            "redis": { "url": redis_url },
            "namespace": { "prefix": prefix },
            "log": { "format": "text", "filter": "error" },
        }))?;
        let settings = Arc::new(settings);
        let pool = tasklane_store::connect(&database_url, 4).await?;
        tasklane_store::migrate(&pool).await?;

        let signing = parse_private_key_pem(&generate_private_key_pem())?;
        let tokens = TokenIssuer::new(
            KeySet::new(&signing, &[]),
            &settings.auth.issuer,
            &settings.auth.audience,
            settings.auth.access_token_ttl,
        );
        let cancel = CancellationToken::new();
        let access = AccessCache::new(pool.clone());
        tokio::spawn(access.clone().listen(cancel.clone().cancelled_owned()));
        let cache = Cache::connect(&redis_url, settings.namespace.clone()).await;
        let redis = ConnectionManager::new(redis::Client::open(redis_url.as_str())?).await?;
        let state = AppState {
            pool,
            tokens,
            access: access.clone(),
            cache,
            settings,
            probes: Arc::new(Vec::new()),
        };
        let bench_routes = Router::new()
            .route(
                "/bench/authenticated/tasks/{id}",
                get(read_cached_task_as_caller),
            )
            .route(
                "/bench/anonymous/{tenant}/tasks/{id}",
                get(read_cached_task),
            )
            .layer(Extension(CachedTasks {
                redis: redis.clone(),
                prefix: prefix.clone(),
            }))
            .with_state(state.clone());
        let router = tasklane_api::router(state.clone()).merge(bench_routes);

        // The access cache caches only once its listener is connected, as in production.
        for _ in 0..100 {
            if access.is_listening() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            router,
            state,
            admin_url,
            database,
            redis,
            prefix,
            cancel,
        })
    }

    async fn call(&self, request: Request<Body>) -> anyhow::Result<(StatusCode, Vec<u8>)> {
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        Ok((status, body.to_vec()))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let (status, body) = self
            .call(request.body(Body::from(body.to_string()))?)
            .await?;
        ensure!(
            status.is_success(),
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Vec<u8>> {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let (status, body) = self.call(request.body(Body::empty())?).await?;
        ensure!(status == StatusCode::OK, "GET {path}: {status}");
        Ok(body)
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = self.redis.keys(pattern).await.unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = self.redis.del(keys).await;
        }
        drop(self.router);
        if let Ok(admin) = tasklane_store::connect(&self.admin_url, 1).await {
            let drop_database = format!("drop database if exists {} with (force)", self.database);
            if let Err(error) = sqlx::query(&drop_database).execute(&admin).await {
                eprintln!("could not drop {}: {error}", self.database);
            }
        }
    }
}

/// The Redis connection and key prefix of the cached task JSON that the bench routes read.
#[derive(Clone)]
struct CachedTasks {
    redis: ConnectionManager,
    prefix: String,
}

impl CachedTasks {
    fn key(&self, tenant_id: Uuid, task_id: Uuid) -> String {
        format!("{}:bench:task:{tenant_id}:{task_id}", self.prefix)
    }

    async fn read(&self, tenant_id: Uuid, task_id: Uuid) -> Response {
        let mut redis = self.redis.clone();
        match redis
            .get::<_, Option<Vec<u8>>>(self.key(tenant_id, task_id))
            .await
        {
            Ok(Some(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Ok(None) => StatusCode::NOT_FOUND.into_response(),
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
}

/// Reads cached task JSON behind the API's whole auth layer, as a cached
/// `GET /tasks/{id}` would.
async fn read_cached_task_as_caller(
    caller: Caller,
    Extension(cached): Extension<CachedTasks>,
    State(_): State<AppState>,
    Path(task_id): Path<Uuid>,
) -> Response {
    if let Err(error) = caller.authorize(Action::ReadContent) {
        return error.into_response();
    }
    cached.read(caller.tenant_id, task_id).await
}

/// Reads the same cached task JSON with no authentication at all, as the baseline.
async fn read_cached_task(
    Extension(cached): Extension<CachedTasks>,
    Path((tenant_id, task_id)): Path<(Uuid, Uuid)>,
) -> Response {
    cached.read(tenant_id, task_id).await
}

async fn bench_requests(args: &Args, app: &BenchApp) -> anyhow::Result<()> {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    app.post(
        "/api/v1/auth/register",
        None,
        json!({ "email": email, "password": PASSWORD, "name": "Bench Person", "tenant": "Bench" }),
    )
    .await?;
    let login = json!({ "email": email, "password": PASSWORD });
    let session = app.post("/api/v1/auth/login", None, login.clone()).await?;
    let token = session["access_token"]
        .as_str()
        .context("login returned no access_token")?
        .to_owned();
    let tenant_id: Uuid = session["tenant_id"]
        .as_str()
        .context("login returned no tenant_id")?
        .parse()?;
    let projects: Value =
        serde_json::from_slice(&app.get("/api/v1/projects", Some(&token)).await?)?;
    let project_id = projects["items"][0]["id"]
        .as_str()
        .context("registration created no project")?;
    let task = app
        .post(
            "/api/v1/tasks",
            Some(&token),
            json!({ "project_id": project_id, "title": "Benchmark task", "description": "x".repeat(400) }),
        )
        .await?;
    let task_id: Uuid = task["id"].as_str().context("task has no id")?.parse()?;
    let api_path = format!("/api/v1/tasks/{task_id}");
    let task_json = app.get(&api_path, Some(&token)).await?;
    let cached = CachedTasks {
        redis: app.redis.clone(),
        prefix: app.prefix.clone(),
    };
    let mut redis = app.redis.clone();
    let _: () = redis
        .set(cached.key(tenant_id, task_id), &task_json)
        .await?;

    bench_login_requests(args, app, &login).await?;

    let authenticated_path = format!("/bench/authenticated/tasks/{task_id}");
    let anonymous_path = format!("/bench/anonymous/{tenant_id}/tasks/{task_id}");
    ensure!(app.get(&authenticated_path, Some(&token)).await? == task_json);
    ensure!(app.get(&anonymous_path, None).await? == task_json);

    let n = args.reads;
    let mut failure = None;
    let mut rounds = Vec::with_capacity(args.rounds);
    let routes = [
        (&anonymous_path, None),
        (&authenticated_path, Some(token.as_str())),
        (&api_path, Some(token.as_str())),
    ];
    for _ in 0..args.rounds {
        // The routes take turns request by request, each starting the turn in rotation, so
        // neither a change in the machine's speed nor the order affects one route more.
        let mut elapsed = [Duration::ZERO; 3];
        for iteration in 0..n as usize {
            for offset in 0..routes.len() {
                let variant = (iteration + offset) % routes.len();
                let (path, bearer) = routes[variant];
                let started = Instant::now();
                if let Err(error) = app.get(path, bearer).await {
                    failure.get_or_insert(error);
                }
                elapsed[variant] += started.elapsed();
            }
        }
        rounds.push(elapsed.map(|total| total.as_secs_f64() * 1e6 / f64::from(n)));
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let [anonymous_us, authenticated_us, api_us] = median_of(rounds);

    // The extractor alone, without the router, which isolates its cost from the noise of
    // two whole requests.
    let (parts, ()) = Request::get(&authenticated_path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(())?
        .into_parts();
    let mut extractor_rounds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let started = Instant::now();
        for _ in 0..n {
            let mut request_parts = parts.clone();
            let caller = Caller::from_request_parts(&mut request_parts, &app.state).await;
            ensure!(caller.is_ok(), "the Caller extractor rejected the token");
        }
        extractor_rounds.push([started.elapsed().as_secs_f64() * 1e6 / f64::from(n)]);
    }
    let [extractor_us] = median_of(extractor_rounds);
    println!();
    println!("task read through the router, in process ({n} per route per round)");
    println!("  cached read (Redis GET), no auth    {anonymous_us:>8.1} us");
    println!(
        "  cached read behind the auth layer   {authenticated_us:>8.1} us   {:+.1} % over no auth",
        (authenticated_us / anonymous_us - 1.0) * 100.0
    );
    println!("  GET /api/v1/tasks/{{id}} (PostgreSQL) {api_us:>8.1} us");
    println!(
        "  Caller extractor alone              {extractor_us:>8.2} us   {:.1} % of the cached read",
        extractor_us / anonymous_us * 100.0
    );
    Ok(())
}

async fn bench_login_requests(args: &Args, app: &BenchApp, login: &Value) -> anyhow::Result<()> {
    let n = args.logins;
    let wrong_password = json!({ "email": login["email"], "password": "not-the-password-93c1" });
    let mut rounds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let started = Instant::now();
        for _ in 0..n {
            app.post("/api/v1/auth/login", None, login.clone()).await?;
        }
        let known_ms = started.elapsed().as_secs_f64() * 1e3 / f64::from(n);

        let mut wrong_elapsed = Duration::ZERO;
        for _ in 0..n {
            // Forget earlier failures so the account lockout never rejects the attempt first.
            sqlx::query("delete from login_attempts")
                .execute(&app.state.pool)
                .await?;
            let started = Instant::now();
            let status = login_status(app, &wrong_password).await?;
            wrong_elapsed += started.elapsed();
            ensure!(
                status == StatusCode::UNAUTHORIZED,
                "wrong password: {status}"
            );
        }
        let wrong_ms = wrong_elapsed.as_secs_f64() * 1e3 / f64::from(n);

        let started = Instant::now();
        for _ in 0..n {
            // A fresh unknown address each time, so the per-account limit never applies.
            let email = format!("{}@example.com", Uuid::new_v4().simple());
            let unknown = json!({ "email": email, "password": PASSWORD });
            let status = login_status(app, &unknown).await?;
            ensure!(
                status == StatusCode::UNAUTHORIZED,
                "unknown login: {status}"
            );
        }
        let unknown_ms = started.elapsed().as_secs_f64() * 1e3 / f64::from(n);
        rounds.push([known_ms, wrong_ms, unknown_ms]);
    }
    let [known_ms, wrong_ms, unknown_ms] = median_of(rounds);
    println!();
    println!("POST /api/v1/auth/login through the router ({n} per round)");
    println!("  known e-mail, right password        {known_ms:>8.1} ms");
    println!("  known e-mail, wrong password        {wrong_ms:>8.1} ms");
    println!(
        "  unknown e-mail                      {unknown_ms:>8.1} ms   {:.3}x wrong password",
        unknown_ms / wrong_ms
    );
    Ok(())
}

async fn login_status(app: &BenchApp, body: &Value) -> anyhow::Result<StatusCode> {
    let request = Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))?;
    let (status, _) = app.call(request).await?;
    Ok(status)
}
