//! Run with: `cargo run -p example-workflows`
//!
//! Two workflows on SQLite (`./workflows.db`, no services):
//!
//! * a fan-out/fan-in report: three `fetch_sales` steps, one per region, run in parallel; the
//!   `report` step waits for all three and reads their outputs by step name
//!   (`ctx.output_of::<u64>("eu")`);
//! * a chain: `extract` → `transform` → `load`, each reading the previous step's output.
//!
//! It prints each workflow's graph with its steps' states (as `switchyard workflows show`
//! does) once it finished.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard::workflow::step;
use switchyard::{
    Job, JobContext, JobError, Registry, Switchyard, WorkflowContextExt, WorkflowDef, WorkflowId,
    WorkflowState,
};

/// Sales of one region (a stand-in for a slow import).
#[derive(Serialize, Deserialize)]
struct FetchSales {
    region: String,
}

impl Job for FetchSales {
    const KIND: &'static str = "fetch_sales";
    type Output = u64;
    async fn run(self, _ctx: JobContext) -> Result<u64, JobError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(self.region.len() as u64 * 1000)
    }
}

/// Sums the regions' sales: the fan-in.
#[derive(Serialize, Deserialize)]
struct Report {
    regions: Vec<String>,
}

impl Job for Report {
    const KIND: &'static str = "report";
    type Output = String;
    async fn run(self, ctx: JobContext) -> Result<String, JobError> {
        let mut total = 0;
        for r in &self.regions {
            total += ctx.output_of::<u64>(r).await?;
        }
        Ok(format!(
            "total sales over {} regions: {total}",
            self.regions.len()
        ))
    }
}

/// One stage of a chain: appends its name to the previous stage's output.
#[derive(Serialize, Deserialize)]
struct Stage {
    name: String,
    previous: Option<String>,
}

impl Job for Stage {
    const KIND: &'static str = "stage";
    type Output = Vec<String>;
    async fn run(self, ctx: JobContext) -> Result<Vec<String>, JobError> {
        let mut trail = match &self.previous {
            Some(p) => ctx.output_of::<Vec<String>>(p).await?,
            None => Vec::new(),
        };
        trail.push(self.name);
        Ok(trail)
    }
}

async fn wait_finished(
    sy: &Switchyard,
    id: WorkflowId,
) -> Result<switchyard::WorkflowRecord, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let w = sy
            .client()
            .get_workflow(id)
            .await?
            .ok_or("workflow vanished")?;
        if w.state != WorkflowState::Running || Instant::now() > deadline {
            return Ok(w);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = switchyard::Config {
        storage: "sqlite://workflows.db".into(),
        ..switchyard::Config::default()
    };
    let sy = Switchyard::connect(config).await?;
    let client = sy.client();

    // Fan-out / fan-in.
    let regions = ["eu", "us", "apac"];
    let mut report = WorkflowDef::new("daily sales report");
    for r in regions {
        report = report.step(step(r, &FetchSales { region: r.into() })?);
    }
    let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
    report = report.step(
        step(
            "report",
            &Report {
                regions: regions.clone(),
            },
        )?
        .after(regions),
    );
    let report_id = client.enqueue_workflow(report).await?;

    // A chain.
    let mut chain = WorkflowDef::new("etl chain");
    let mut previous: Option<String> = None;
    for name in ["extract", "transform", "load"] {
        let s = step(
            name,
            &Stage {
                name: name.into(),
                previous: previous.clone(),
            },
        )?;
        chain = chain.step(s.after(previous.clone()));
        previous = Some(name.into());
    }
    let chain_id = client.enqueue_workflow(chain).await?;

    let running = sy.start(
        Registry::new()
            .register::<FetchSales>()
            .register::<Report>()
            .register::<Stage>(),
    )?;
    for id in [report_id, chain_id] {
        let w = wait_finished(&sy, id).await?;
        println!("workflow `{}`: {}", w.name, w.state);
        for s in &w.steps {
            let out = client.get(s.job_id).await?.and_then(|j| j.result);
            let deps = if s.deps.is_empty() {
                String::new()
            } else {
                format!(" <- {}", s.deps.join(", "))
            };
            println!(
                "  [{}] {}{deps}: {}",
                s.state,
                s.name,
                out.unwrap_or_default()
            );
        }
    }
    running.stop().await;
    Ok(())
}
