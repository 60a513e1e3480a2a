//! SQS errors → [`switchyard_core::Error`]: the SDK's errors by kind, receipts that no longer
//! name an in-flight message, and the failed entries of a batch call.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use switchyard_core::{Error, ErrorKind, Result};

/// Batch-entry error codes that mean "this receipt no longer names an in-flight message": the
/// message was deleted, or its visibility ran out and it was (or will be) delivered again.
const STALE_RECEIPT_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "InvalidReceiptHandle",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
    "InvalidParameterValue",
];

/// The error of a failed SDK call `what`: `Unavailable` for timeouts, transport failures,
/// throttling and server faults, `NotFound` for a missing queue, `Config` for credentials and
/// permissions, `Conflict` for a queue name taken, `Internal` otherwise.
pub(crate) fn sdk_error<E, R>(what: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = format!("SQS {what} failed: {}", DisplayErrorContext(&e));
    if let Some(why) = tls_failure(&e) {
        return Error::config(format!("SQS {what} failed: {why}")).with_source(e);
    }
    let kind = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ErrorKind::Unavailable
        }
        SdkError::ServiceError(s) => match s.err().code().unwrap_or_default() {
            "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => ErrorKind::NotFound,
            "AccessDenied"
            | "AccessDeniedException"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "InvalidSecurity"
            | "MissingAuthenticationToken" => ErrorKind::Config,
            "QueueNameExists" | "QueueAlreadyExists" => ErrorKind::Conflict,
            code if code.contains("Throttl")
                || code.contains("Unavailable")
                || code.contains("InternalError")
                || code.contains("InternalFailure")
                || code == "QueueDeletedRecently"
                || code == "RequestThrottled" =>
            {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    };
    Error::new(kind, message).with_source(e)
}

/// What a failed TLS handshake with the endpoint means, with the fix (an https endpoint
/// behind a private CA, or an http one named with https).
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use switchyard_core::adapter::{tls_problem, TlsProblem};
    let problem = tls_problem(e)?;
    let fix = match problem {
        TlsProblem::NotTrusted => {
            "name the CA that signed it with the setting `sqs.tls_ca_file` (a PEM file; \
             `SqsConfig::tls_ca_file` in code)"
        }
        TlsProblem::WrongName => "use an endpoint URL with the host name the certificate names",
        TlsProblem::NotTls => "the endpoint speaks plain HTTP: use an http:// endpoint URL",
        _ => "check the endpoint's certificate, or `sqs.tls_ca_file`",
    };
    Some(format!("{}; {fix}", problem.describe()))
}

/// Whether an error code says the receipt no longer names an in-flight message.
pub(crate) fn is_stale_receipt(code: &str) -> bool {
    STALE_RECEIPT_CODES.contains(&code)
}

/// Failed entries of a delete or visibility batch: stale receipts are fine (that message is
/// already back in the queue, or gone), anything else is an error.
pub(crate) fn batch_failures(
    what: &str,
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> Result<()> {
    let mut errors = Vec::new();
    for f in failed {
        if is_stale_receipt(f.code()) {
            tracing::debug!(code = f.code(), "{what}: receipt no longer valid; ignored");
        } else {
            errors.push(format!("{}: {}", f.code(), f.message().unwrap_or_default()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "SQS {what}: {} entries failed: {}",
                errors.len(),
                errors.join("; ")
            ),
        ))
    }
}

/// The error of building a batch entry (a required field missing: a bug, not the network).
pub(crate) fn entry_error(e: aws_sdk_sqs::error::BuildError) -> Error {
    Error::new(ErrorKind::Internal, "building an SQS batch entry").with_source(e)
}
