fn main() {
    std::process::exit(imgraph::run(std::env::args_os()));
}
