//! Uploaded files, stored as ordered chunks of about 1 MiB so that neither the upload nor
//! the import ever keeps a whole file in memory.

use futures::Stream;
use sqlx::PgPool;
use tasklane_domain::new_id;
use uuid::Uuid;

use crate::StoreError;

/// Size at which the API cuts an upload into a new chunk.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Creates an upload row. Uploads are written outside any transaction, chunk by chunk, so
/// a slow client never keeps a transaction open.
pub async fn create(
    pool: &PgPool,
    tenant_id: Uuid,
    created_by: Uuid,
    filename: &str,
    content_type: Option<&str>,
) -> Result<Uuid, StoreError> {
    let id = new_id();
    sqlx::query(
        "insert into uploads (id, tenant_id, filename, content_type, created_by) values ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(filename)
    .bind(content_type)
    .bind(created_by)
    .execute(pool)
    .await?;
    Ok(id)
}

pub async fn append_chunk(
    pool: &PgPool,
    tenant_id: Uuid,
    upload_id: Uuid,
    seq: i32,
    data: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into upload_chunks (tenant_id, upload_id, seq, data) values ($1, $2, $3, $4)",
    )
    .bind(tenant_id)
    .bind(upload_id)
    .bind(seq)
    .bind(data)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_size(pool: &PgPool, upload_id: Uuid, size_bytes: i64) -> Result<(), StoreError> {
    sqlx::query("update uploads set size_bytes = $2 where id = $1")
        .bind(upload_id)
        .bind(size_bytes)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes an upload that no job will read, with its chunks.
pub async fn delete(pool: &PgPool, upload_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("delete from uploads where id = $1")
        .bind(upload_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Streams an upload's bytes chunk by chunk, reading one chunk per query.
pub fn read_chunks(
    pool: PgPool,
    tenant_id: Uuid,
    upload_id: Uuid,
) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(Some(0i32), move |next_seq| {
        let pool = pool.clone();
        async move {
            let seq = next_seq?;
            let chunk: Result<Option<Vec<u8>>, sqlx::Error> = sqlx::query_scalar(
                "select data from upload_chunks where tenant_id = $1 and upload_id = $2 and seq = $3",
            )
            .bind(tenant_id)
            .bind(upload_id)
            .bind(seq)
            .fetch_optional(&pool)
            .await;
            match chunk {
                Ok(Some(data)) => Some((Ok(bytes::Bytes::from(data)), Some(seq + 1))),
                Ok(None) => None,
                Err(error) => Some((Err(std::io::Error::other(error)), None)),
            }
        }
    })
}
