/*
 * reflection.h - gRPC server reflection, grpc.reflection.v1alpha and grpc.reflection.v1.
 *
 * Both packages carry the same messages with the same field numbers, so one handler serves
 * both (it decodes and encodes with the v1alpha types; the bytes are identical on the wire).
 * ServerReflectionInfo is a bidirectional stream; each request gets one response, in order:
 *   list_services                 every service of the embedded descriptor set that the server
 *                                 has methods registered for
 *   file_by_filename              that file, then its imports (transitively)
 *   file_containing_symbol        the declaring file, then its imports; NOT_FOUND error response
 *                                 for an unknown symbol
 *   file_containing_extension     NOT_FOUND error response (strata declares no extensions)
 *   all_extension_numbers_of_type an empty list for a known message type (it has no
 *                                 extensions), NOT_FOUND error response otherwise
 *   nothing set                   INVALID_ARGUMENT error response
 * Request bytes that do not parse end the stream with INVALID_ARGUMENT.
 * Data: proto/descriptor_set.h (built by protoc --include_imports --descriptor_set_out).
 */
#ifndef STRATA_NODE_REFLECTION_H
#define STRATA_NODE_REFLECTION_H

#include "node/server.h"

typedef struct st_reflection st_reflection;

/* Index the embedded descriptor set and register both services' methods on srv (borrowed;
   it must outlive the reflection service). */
st_status st_reflection_create(st_server *srv, st_reflection **out);

/* Free; after st_server_destroy. Accepts NULL. */
void st_reflection_destroy(st_reflection *r);

#endif
