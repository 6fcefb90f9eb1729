//! `conclave`: run, simulate and check Conclave clusters.

mod admin_command;
mod bench;
mod check_command;
mod demo;
mod local_command;
mod nemesis;
mod serve_command;
mod sim_command;
mod tcp_proxy;

use std::process::ExitCode;

/// A node allocates per request, per entry and per engine batch, from many
/// threads; glibc's malloc took a quarter of the apply thread's CPU
/// (docs/decisions/0095).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// Conclave: a consensus engine whose elections pick the newest data, never split
/// the brain, and give every term exactly one leader.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the deterministic cluster simulator over many seeds (or replay one).
    #[command(after_help = sim_command::MEASURES_HELP)]
    Sim(sim_command::SimArgs),
    /// Model-check the real core exhaustively, to a bounded depth.
    Check(check_command::CheckArgs),
    /// Run one node of a cluster from its config file (every key overridable by flag or env).
    Serve(serve_command::ServeArgs),
    /// Run a local cluster of `conclave serve` processes on loopback, in the foreground.
    Local(local_command::LocalArgs),
    /// Kill the leader of a local 5-node cluster under load, again and again, and
    /// show the failovers from the nodes' own events (and that no write is lost).
    Demo(demo::DemoArgs),
    /// Measure write throughput and p50/p99 latency of a local cluster (fsync on)
    /// at several numbers of concurrent clients.
    Bench(bench::BenchArgs),
    /// Run a local cluster under client load while injecting faults (kill,
    /// pause, partition, …), then check the recorded history for linearizability.
    Nemesis(nemesis::NemesisArgs),
    /// An operator's commands to a running node (leader transfer), over its client port.
    Admin(admin_command::AdminArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim_command::run(args),
        Command::Check(args) => check_command::run(args),
        Command::Serve(args) => serve_command::run(args),
        Command::Local(args) => local_command::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Nemesis(args) => nemesis::run(args),
        Command::Admin(args) => admin_command::run(args),
    }
}
