//! The application side: a SQL query over Flight SQL, printed as a table of Arrow batches.
//!
//! ```sh
//! cargo run --example query -- http://127.0.0.1:50051 "$TOKEN" "SELECT * FROM env LIMIT 5"
//! ```

use strata_client::query::QueryClient;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, sql] = args.as_slice() else {
        anyhow::bail!("usage: query FLIGHT_URL TOKEN SQL");
    };
    let mut client = QueryClient::connect(url, token)?;
    let batches = client.query(sql)?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    for b in &batches {
        println!("{b:?}");
    }
    println!("{rows} rows in {} batches", batches.len());
    Ok(())
}
