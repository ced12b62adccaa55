//! End-to-end tests: real `bk-coordinator` and `bk-worker` processes on loopback, driven with
//! `bkctl -o json`, against generated InfluxDB 3 trees on disk. One binary, one file per scenario.

mod support;
mod t01_backup_contains_every_object;
mod t02_phases_run_in_order;
mod t03_catalog_layouts;
mod t04_missing_worker_is_reported;
mod t05_coordinator_restart_keeps_state;
mod t06_restore_round_trip;
mod t07_restore_guards;
mod t08_verify_and_damage;
mod t09_live_sources;
mod t10_questdb;
mod t11_replicas_and_crashes;
mod t12_incremental_and_prune;
mod t13_deploy_manifests;
mod t14_auth;
mod t15_metrics;
mod t16_schedules;
mod t17_s3;
mod t18_large_objects;
mod t19_tls;
mod t20_store_retries;
mod t21_lost_assignment;
mod t22_stand_in_worker;
mod t23_questdb_versions;
mod t24_format_checks;
mod t25_repository_keys;
mod t26_real_influxdb3;
mod t27_drills;
mod t28_snapshots;
mod t29_chaos;
mod t30_console;
