//! The image database's rows in SQLite (`DIR/images.sqlite`): one row per image (content
//! hash as id, path, labels, caption, size, the CLIP embedding as a little-endian f32 blob)
//! and one row recording the CLIP model the embeddings came from. Every write is one
//! SQLite transaction, so a crash leaves the database as it was before the write.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::{DataError, Result};

/// The SQLite file inside a database folder.
pub const DATABASE_FILE: &str = "images.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clip_model (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    path TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    labels TEXT NOT NULL,
    caption TEXT,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    vector BLOB NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_path ON images (path);
CREATE TABLE IF NOT EXISTS ann_index (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    rows INTEGER NOT NULL,
    max_seq INTEGER NOT NULL
);
";

/// What the saved approximate index covers: `rows` rows, every row with `seq` ≤ `max_seq`
/// (`seq` is AUTOINCREMENT: never reused, so rows added later have larger ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnState {
    pub rows: usize,
    pub max_seq: i64,
}

/// The CLIP model a database was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelRecord {
    pub path: PathBuf,
    /// [`crate::ClipModel::fingerprint`].
    pub fingerprint: String,
    /// Embedding size (`projection_dim`).
    pub dimension: usize,
}

/// One image's row, without its embedding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRow {
    /// SHA-256 of the file's bytes (hex).
    pub id: String,
    pub path: String,
    pub labels: Vec<String>,
    pub caption: Option<String>,
    pub width: u32,
    pub height: u32,
}

/// An open database file.
pub struct Store {
    connection: Connection,
    dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Store")
            .field("dir", &self.dir)
            .finish()
    }
}

impl Store {
    /// Opens the database in `dir`; an error names the folder when there is none.
    pub fn open(dir: &Path) -> Result<Self> {
        let file = dir.join(DATABASE_FILE);
        if !file.is_file() {
            return Err(DataError::MissingDatabase {
                path: dir.to_path_buf(),
            });
        }
        let connection = Connection::open(&file).map_err(|source| database(dir, source))?;
        // tables added since the database was made (idempotent)
        connection
            .execute_batch(SCHEMA)
            .map_err(|source| database(dir, source))?;
        let store = Self {
            connection,
            dir: dir.to_path_buf(),
        };
        store.model()?;
        Ok(store)
    }

    /// Creates `dir` and its database recording `model`, in one transaction.
    pub fn create(dir: &Path, model: &ModelRecord) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut connection =
            Connection::open(dir.join(DATABASE_FILE)).map_err(|source| database(dir, source))?;
        let transaction = connection
            .transaction()
            .map_err(|source| database(dir, source))?;
        transaction
            .execute_batch(SCHEMA)
            .and_then(|()| {
                transaction.execute(
                    "INSERT INTO clip_model (singleton, path, fingerprint, dimension, created_at)
                     VALUES (1, ?1, ?2, ?3, ?4)",
                    params![
                        model.path.to_string_lossy(),
                        model.fingerprint,
                        model.dimension as i64,
                        now()
                    ],
                )
            })
            .and_then(|_| transaction.commit())
            .map_err(|source| database(dir, source))?;
        Ok(Self {
            connection,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The recorded CLIP model.
    pub fn model(&self) -> Result<ModelRecord> {
        let row = self
            .connection
            .query_row(
                "SELECT path, fingerprint, dimension FROM clip_model WHERE singleton = 1",
                [],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|source| self.error(source))?;
        let (path, fingerprint, dimension) = row.ok_or_else(|| DataError::BadDatabase {
            path: self.dir.clone(),
            message: "no CLIP model is recorded".into(),
        })?;
        Ok(ModelRecord {
            path: PathBuf::from(path),
            fingerprint,
            dimension: usize::try_from(dimension).unwrap_or(0),
        })
    }

    /// Records a new location of the same model (same fingerprint).
    pub fn set_model_path(&self, path: &Path) -> Result<()> {
        self.connection
            .execute(
                "UPDATE clip_model SET path = ?1 WHERE singleton = 1",
                params![path.to_string_lossy()],
            )
            .map_err(|source| self.error(source))?;
        Ok(())
    }

    pub fn contains(&self, id: &str) -> Result<bool> {
        self.connection
            .query_row(
                "SELECT 1 FROM images WHERE id = ?1",
                params![id],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|source| self.error(source))
    }

    pub fn count(&self) -> Result<usize> {
        self.connection
            .query_row("SELECT COUNT(*) FROM images", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|count| usize::try_from(count).unwrap_or(0))
            .map_err(|source| self.error(source))
    }

    /// Inserts rows with their embeddings in one transaction; rows whose id is already
    /// present are left as they are. Returns how many were new.
    pub fn insert(&mut self, rows: &[(ImageRow, Vec<f32>)]) -> Result<usize> {
        let dir = self.dir.clone();
        let transaction = self
            .connection
            .transaction()
            .map_err(|source| database(&dir, source))?;
        let mut inserted = 0;
        {
            let mut statement = transaction
                .prepare(
                    "INSERT OR IGNORE INTO images
                     (id, path, labels, caption, width, height, vector, added_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|source| database(&dir, source))?;
            for (row, vector) in rows {
                inserted += statement
                    .execute(params![
                        row.id,
                        row.path,
                        labels_to_json(&row.labels),
                        row.caption,
                        row.width,
                        row.height,
                        vector_to_blob(vector),
                        now()
                    ])
                    .map_err(|source| database(&dir, source))?;
            }
        }
        transaction
            .commit()
            .map_err(|source| database(&dir, source))?;
        Ok(inserted)
    }

    /// Removes the rows whose id or path is one of `keys` (an id may be abbreviated to a
    /// unique prefix of at least 8 characters), in one transaction; returns them.
    pub fn remove(&mut self, keys: &[String]) -> Result<Vec<ImageRow>> {
        let dir = self.dir.clone();
        let transaction = self
            .connection
            .transaction()
            .map_err(|source| database(&dir, source))?;
        let mut removed = Vec::new();
        for key in keys {
            let prefix = if key.len() >= 8 && key.chars().all(|c| c.is_ascii_hexdigit()) {
                format!("{}%", key.to_ascii_lowercase())
            } else {
                key.clone()
            };
            let rows: Vec<ImageRow> = {
                let mut statement = transaction
                    .prepare(&format!(
                        "SELECT {ROW_COLUMNS} FROM images WHERE id LIKE ?1 OR path = ?2"
                    ))
                    .map_err(|source| database(&dir, source))?;
                let rows = statement
                    .query_map(params![prefix, key], read_row)
                    .and_then(Iterator::collect)
                    .map_err(|source| database(&dir, source))?;
                rows
            };
            for row in rows {
                transaction
                    .execute("DELETE FROM images WHERE id = ?1", params![row.id])
                    .map_err(|source| database(&dir, source))?;
                removed.push(row);
            }
        }
        transaction
            .commit()
            .map_err(|source| database(&dir, source))?;
        Ok(removed)
    }

    /// Every row, in insertion order.
    pub fn rows(&self) -> Result<Vec<ImageRow>> {
        let mut statement = self
            .connection
            .prepare(&format!("SELECT {ROW_COLUMNS} FROM images ORDER BY seq"))
            .map_err(|source| self.error(source))?;
        statement
            .query_map([], read_row)
            .and_then(Iterator::collect)
            .map_err(|source| self.error(source))
    }

    pub fn row(&self, id: &str) -> Result<Option<ImageRow>> {
        self.connection
            .query_row(
                &format!("SELECT {ROW_COLUMNS} FROM images WHERE id = ?1"),
                params![id],
                read_row,
            )
            .optional()
            .map_err(|source| self.error(source))
    }

    /// Every id with its embedding: the ids in insertion order and the vectors
    /// concatenated ([n × dimension]). A blob of the wrong length is an error.
    pub fn vectors(&self, dimension: usize) -> Result<(Vec<String>, Vec<f32>)> {
        let mut statement = self
            .connection
            .prepare("SELECT id, vector FROM images ORDER BY seq")
            .map_err(|source| self.error(source))?;
        let mut rows = statement.query([]).map_err(|source| self.error(source))?;
        let mut ids = Vec::new();
        let mut vectors = Vec::new();
        while let Some(row) = rows.next().map_err(|source| self.error(source))? {
            let id: String = row.get(0).map_err(|source| self.error(source))?;
            let blob: Vec<u8> = row.get(1).map_err(|source| self.error(source))?;
            if blob.len() != dimension * 4 {
                return Err(DataError::BadDatabase {
                    path: self.dir.clone(),
                    message: format!(
                        "image {id} has a {}-byte embedding, expected {dimension} f32 values",
                        blob.len()
                    ),
                });
            }
            vectors.extend(blob_values(&blob));
            ids.push(id);
        }
        Ok((ids, vectors))
    }

    /// The embedding of the image with this id, if it is stored.
    pub fn vector(&self, id: &str, dimension: usize) -> Result<Option<Vec<f32>>> {
        let blob: Option<Vec<u8>> = self
            .connection
            .prepare_cached("SELECT vector FROM images WHERE id = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row(params![id], |row| row.get(0))
                    .optional()
            })
            .map_err(|source| self.error(source))?;
        match blob {
            Some(blob) if blob.len() != dimension * 4 => Err(DataError::BadDatabase {
                path: self.dir.clone(),
                message: format!(
                    "image {id} has a {}-byte embedding, expected {dimension} f32 values",
                    blob.len()
                ),
            }),
            Some(blob) => Ok(Some(blob_values(&blob).collect())),
            None => Ok(None),
        }
    }

    /// The row with this `seq` (the approximate index's key).
    pub fn row_by_seq(&self, seq: i64) -> Result<Option<ImageRow>> {
        self.connection
            .prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM images WHERE seq = ?1"))
            .and_then(|mut statement| statement.query_row(params![seq], read_row).optional())
            .map_err(|source| self.error(source))
    }

    /// The last `seq` ever assigned (0 before the first row): every row added later has a
    /// larger one. A point lookup, cheap enough to check on every search.
    pub fn last_seq(&self) -> Result<i64> {
        self.connection
            .query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'images'), 0)",
                [],
                |row| row.get(0),
            )
            .map_err(|source| self.error(source))
    }

    /// How many rows have `seq` > `after`.
    pub fn count_after(&self, after: i64) -> Result<usize> {
        self.connection
            .query_row(
                "SELECT COUNT(*) FROM images WHERE seq > ?1",
                params![after],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| usize::try_from(count).unwrap_or(0))
            .map_err(|source| self.error(source))
    }

    /// Calls `visit(seqs, vectors)` for the rows with `seq` > `after`, `chunk` rows at a
    /// time (vectors concatenated), so building an index never holds every vector twice.
    pub fn for_each_vector_chunk(
        &self,
        after: i64,
        dimension: usize,
        chunk: usize,
        mut visit: impl FnMut(&[i64], &[f32]),
    ) -> Result<()> {
        let mut statement = self
            .connection
            .prepare("SELECT seq, vector FROM images WHERE seq > ?1 ORDER BY seq")
            .map_err(|source| self.error(source))?;
        let mut rows = statement
            .query(params![after])
            .map_err(|source| self.error(source))?;
        let mut seqs = Vec::with_capacity(chunk);
        let mut vectors = Vec::with_capacity(chunk * dimension);
        while let Some(row) = rows.next().map_err(|source| self.error(source))? {
            let seq: i64 = row.get(0).map_err(|source| self.error(source))?;
            let blob: Vec<u8> = row.get(1).map_err(|source| self.error(source))?;
            if blob.len() != dimension * 4 {
                return Err(DataError::BadDatabase {
                    path: self.dir.clone(),
                    message: format!(
                        "row {seq} has a {}-byte embedding, expected {dimension} f32 values",
                        blob.len()
                    ),
                });
            }
            seqs.push(seq);
            vectors.extend(blob_values(&blob));
            if seqs.len() == chunk {
                visit(&seqs, &vectors);
                seqs.clear();
                vectors.clear();
            }
        }
        if !seqs.is_empty() {
            visit(&seqs, &vectors);
        }
        Ok(())
    }

    pub fn ann_state(&self) -> Result<Option<AnnState>> {
        self.connection
            .query_row(
                "SELECT rows, max_seq FROM ann_index WHERE singleton = 1",
                [],
                |row| {
                    Ok(AnnState {
                        rows: usize::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        max_seq: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|source| self.error(source))
    }

    pub fn set_ann_state(&self, rows: usize, max_seq: i64) -> Result<()> {
        self.connection
            .execute(
                "INSERT OR REPLACE INTO ann_index (singleton, rows, max_seq) VALUES (1, ?1, ?2)",
                params![rows as i64, max_seq],
            )
            .map(|_| ())
            .map_err(|source| self.error(source))
    }

    pub fn clear_ann_state(&self) -> Result<()> {
        self.connection
            .execute("DELETE FROM ann_index", [])
            .map(|_| ())
            .map_err(|source| self.error(source))
    }

    fn error(&self, source: rusqlite::Error) -> DataError {
        database(&self.dir, source)
    }
}

const ROW_COLUMNS: &str = "id, path, labels, caption, width, height";

fn read_row(row: &rusqlite::Row) -> rusqlite::Result<ImageRow> {
    let labels: String = row.get(2)?;
    Ok(ImageRow {
        id: row.get(0)?,
        path: row.get(1)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        caption: row.get(3)?,
        width: row.get(4)?,
        height: row.get(5)?,
    })
}

fn database(dir: &Path, source: rusqlite::Error) -> DataError {
    DataError::Database {
        path: dir.to_path_buf(),
        source,
    }
}

fn labels_to_json(labels: &[String]) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "[]".into())
}

fn blob_values(blob: &[u8]) -> impl Iterator<Item = f32> + '_ {
    blob.chunks_exact(4)
        .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn vector_to_blob(vector: &[f32]) -> Vec<u8> {
    vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// Seconds since the Unix epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}
