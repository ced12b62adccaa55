//! A QuestDB-like server root (`shared/reference/questdb-checkpoint.md` §4.1): `conf/`, `db/` with
//! a table registry, WAL and non-WAL tables (`_meta`, `_txn`, `_cv`, `_name`, `_todo_`, symbol
//! files, partitions with column files, `txn_seq/`, `wal<N>/<segment>/`), and the directories a
//! backup leaves out (`log/`, `public/`, `tmp/`).

use std::fs;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Writes a root with `tables` tables of `partitions` daily partitions each, columns of
/// `column_bytes` bytes. Returns the number of files.
///
/// # Errors
/// IO errors.
pub fn generate_root(
    root: &Path,
    tables: usize,
    partitions: usize,
    column_bytes: usize,
    seed: u64,
) -> std::io::Result<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut count = 0;
    let mut write = |relative: &str, bytes: &[u8]| -> std::io::Result<()> {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, bytes)?;
        count += 1;
        Ok(())
    };
    let mut random = |size: usize| {
        let mut bytes = vec![0u8; size];
        rng.fill_bytes(&mut bytes);
        bytes
    };
    write("conf/server.conf", b"http.bind.to=0.0.0.0:9000\npg.net.bind.to=0.0.0.0:8812\n")?;
    write("conf/date.formats", b"dd/MM/y\nyyyy-MM-dd HH:mm:ss\n")?;
    write("conf/mime.types", b"text/html html\n")?;
    write("db/tables.d.0", &random(256))?;
    write("db/_tab_index.d", &random(64))?;
    write("db/_upgrade.d", &random(16))?;
    for table in 0..tables {
        let wal = table % 2 == 0;
        let dir = if wal {
            format!("db/trades_{table}~{}", table + 1)
        } else {
            format!("db/sensors_{table}")
        };
        for file in ["_meta", "_txn", "_cv", "_todo_"] {
            write(&format!("{dir}/{file}"), &random(128))?;
        }
        write(&format!("{dir}/_name"), dir.as_bytes())?;
        for extension in ["o", "c", "k", "v"] {
            write(&format!("{dir}/symbol.{extension}"), &random(512))?;
        }
        for day in 1..=partitions {
            for column in ["ts.d", "price.d", "symbol.d", "note.d", "note.i"] {
                write(&format!("{dir}/2024-01-{day:02}/{column}"), &random(column_bytes))?;
            }
        }
        if wal {
            write(&format!("{dir}/txn_seq/_meta"), &random(128))?;
            write(&format!("{dir}/txn_seq/_txnlog"), &random(1024))?;
            write(&format!("{dir}/txn_seq/_wal_index.d"), &random(64))?;
            for file in ["_meta", "_event", "_event.i", "price.d"] {
                write(&format!("{dir}/wal1/0/{file}"), &random(256))?;
            }
        }
    }
    write(
        "log/stdout-2024-01-01T00-00-00.txt",
        b"2024-01-01T00:00:00.000000Z I server-main QuestDB is running\n",
    )?;
    write("public/index.html", b"<html>web console</html>")?;
    write("tmp/scratch", b"temporary")?;
    Ok(count)
}
