//! The operator's command line: parses (`raffle_outbox::cmd::Cli`), points
//! the AWS SDK at the local stack unless `RAFFLE_OUTBOX_TARGET=aws`, starts
//! the logs, and hands the command to its `run()` in `src/cmd/`. Exit
//! status: 0 done, 1 the check found a difference, 2 could not run.

use std::process::ExitCode;

use raffle_outbox::cmd::progress::LogWriter;
use raffle_outbox::cmd::{Cli, Command, Context, Outcome, COULD_NOT_RUN};
use raffle_outbox::config::default_to_local_stack;
use raffle_outbox::local::StackConfig;
use raffle_outbox::telemetry;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        // Usage errors exit 2, --help and --version 0 (clap's own codes).
        Err(error) => error.exit(),
    };
    let stack = StackConfig::from_env();
    if std::env::var("RAFFLE_OUTBOX_TARGET").as_deref() != Ok("aws") {
        default_to_local_stack(&stack.dynamodb_endpoint());
    }
    // On a terminal, log lines make way for the progress bar.
    let terminal = BoxMakeWriter::new(|| LogWriter);
    telemetry::init_with(cli.verbosity.directive(), terminal);
    let ctx = Context {
        config: cli.config,
        stack,
    };
    let run = std::panic::catch_unwind(move || {
        let runtime = match cli.command.runs_as_a_lambda() {
            true => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            false => tokio::runtime::Runtime::new(),
        }
        .expect("tokio runtime");
        runtime.block_on(dispatch(cli.command, &ctx))
    });
    match run {
        Ok(Ok(outcome)) => outcome.exit_code(),
        Ok(Err(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(COULD_NOT_RUN)
        }
        // The panic's message is on stderr already.
        Err(_) => ExitCode::from(COULD_NOT_RUN),
    }
}

async fn dispatch(command: Command, ctx: &Context) -> anyhow::Result<Outcome> {
    match command {
        Command::Local(args) => args.run(ctx).await,
        Command::Migrate(args) => args.run(ctx).await,
        Command::Run(args) => args.run(ctx).await,
        Command::Register(args) => args.run(ctx).await,
        Command::Demo(args) => args.run(ctx).await,
        Command::Bench(args) => args.run(ctx).await,
        Command::Audit(args) => args.run(ctx).await,
        Command::Redrive(args) => args.run(ctx).await,
        Command::Verify(args) => args.run(ctx).await,
        Command::Reconcile(args) => args.run(ctx).await,
        Command::Retention(args) => args.run(ctx).await,
    }
}
