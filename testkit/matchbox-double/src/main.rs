fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(matchbox_double::app::run(&args));
}
