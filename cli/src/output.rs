//! Printing a command's result as `-o` asks, the one place that knows the three formats.

use serde_json::Value;

use crate::cli::OutputFormat;

/// Prints `document` as `-o` asks: the table (drawn by `table`), JSON or YAML.
pub(crate) fn emit(output: OutputFormat, document: Value, table: impl FnOnce()) {
    match output {
        OutputFormat::Yaml => {
            print!("{}", yaml_serde::to_string(&document).unwrap_or_else(|_| document.to_string()))
        }
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string())
        ),
        OutputFormat::Table => table(),
    }
}
