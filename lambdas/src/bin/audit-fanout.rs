//! The `audit-fanout` Lambda function: the AWS adapters, rate-limited, serving
//! `lambdas::handlers` under the Lambda runtime API.

use rules::functions::Function;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambdas::runtime::main(Function::AuditFanout, |config| async move {
        lambdas::aws::load_for(Function::AuditFanout, &config).await
    })
    .await
}
