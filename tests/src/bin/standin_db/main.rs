//! The test kit's stand-in database for restore drills: started by a drill exactly as it would
//! start `influxdb3` or QuestDB (see [`bk_tests::standin_db`]).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(bk_tests::standin_db::run(&args));
}
