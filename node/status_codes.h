/* status_codes.h - names of gRPC status codes, for messages and logs. */
#ifndef STRATA_NODE_STATUS_CODES_H
#define STRATA_NODE_STATUS_CODES_H

#include <grpc/status.h>

/* The canonical name of a gRPC status code, e.g. "NOT_FOUND"; "UNKNOWN_CODE" past the table. */
const char *st_grpc_code_name(grpc_status_code code);

#endif
