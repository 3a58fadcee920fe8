//! Whole-call failures of an AWS SDK call, as the retry loop sees them: an error code or HTTP
//! status worth another try is [`SendError::Transient`], anything else
//! [`SendError::Permanent`]. Shared by the buffers' senders (each passes its own list of
//! transient codes); it does not look at per-entry failures, which each sender maps itself.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::SendError;

/// Error codes that mean "try again later" on any AWS JSON service, as they appear after the
/// last `.` or `#` (`KMS.ThrottlingException`, `com.amazonaws.sqs#InternalError`).
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "SlowDown",
    "KmsThrottled",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// The code without its namespace (`com.amazonaws.sqs#InternalError` -> `InternalError`).
pub fn short_code(code: &str) -> &str {
    code.rsplit(['.', '#']).next().unwrap_or(code)
}

/// Whether `code` is one of the codes in `TRANSIENT_CODES`, above.
pub fn transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&short_code(code))
}

/// Whether a service error (the service answered, but with an error) is worth retrying:
/// 5xx, 429, or a code `transient` accepts.
pub fn classify_service(status: u16, code: Option<&str>, transient: fn(&str) -> bool) -> SendError {
    let what = format!("HTTP {status} {}", code.unwrap_or("(no error code)"));
    if status >= 500 || status == 429 || code.is_some_and(transient) {
        SendError::Transient(what)
    } else {
        SendError::Permanent(what)
    }
}

/// Maps an SDK failure. Messages carry codes and statuses only, never request contents.
pub fn classify<E: ProvideErrorMetadata>(
    error: &SdkError<E, HttpResponse>,
    transient: fn(&str) -> bool,
) -> SendError {
    match error {
        SdkError::ServiceError(e) => {
            classify_service(e.raw().status().as_u16(), error.code(), transient)
        }
        SdkError::ResponseError(e) => {
            let status = e.raw().status().as_u16();
            if (400..500).contains(&status) && status != 429 {
                SendError::Permanent(format!("HTTP {status}, unreadable answer"))
            } else {
                SendError::Transient(format!("HTTP {status}, unreadable answer"))
            }
        }
        SdkError::DispatchFailure(d) if d.is_user() => {
            SendError::Permanent("the request could not be sent".into())
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            SendError::Transient("connection timed out".into())
        }
        SdkError::DispatchFailure(_) => SendError::Transient("connection failed".into()),
        SdkError::TimeoutError(_) => SendError::Transient("timed out".into()),
        SdkError::ConstructionFailure(_) => {
            SendError::Permanent("the request could not be built".into())
        }
        _ => SendError::Transient("unknown SDK error".into()),
    }
}
