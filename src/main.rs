//! `bootlet`: thin; everything lives in the library (`bootlet::app`).

fn main() {
    std::process::exit(bootlet::app::main_with_args(std::env::args_os()));
}
