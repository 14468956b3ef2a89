/* reflection.c - grpc.reflection.v1alpha / v1 ServerReflectionInfo. */
#include "node/reflection.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "node/proto_index.h"
#include "proto/descriptor_set.h"

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest refl_request;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse refl_response;

struct st_reflection {
    st_proto_index *idx;
    st_server *srv; /* borrowed */
};

static void on_request(st_call *call, const uint8_t *data, size_t len, bool got);

static void on_sent(st_call *call, bool ok)
{
    if (!ok) {
        st_call_fail(call, GRPC_STATUS_CANCELLED, "ServerReflectionInfo: the client went away");
        return;
    }
    st_call_recv(call, on_request);
}

static void error_response(refl_response *resp, Grpc__Reflection__V1alpha__ErrorResponse *err,
                           grpc_status_code code, char *msg)
{
    err->error_code = code;
    err->error_message = msg;
    resp->message_response_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp->error_response = err;
}

/* Answer one request on the stream. */
static void answer(st_reflection *refl, st_call *call, refl_request *q)
{
    const st_proto_index *idx = refl->idx;
    refl_response resp = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ErrorResponse err = GRPC__REFLECTION__V1ALPHA__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__FileDescriptorResponse fdr =
        GRPC__REFLECTION__V1ALPHA__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ListServiceResponse lsr =
        GRPC__REFLECTION__V1ALPHA__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1alpha__ExtensionNumberResponse enr =
        GRPC__REFLECTION__V1ALPHA__EXTENSION_NUMBER_RESPONSE__INIT;
    char msg[512];
    size_t nfiles = st_proto_index_file_count(idx);
    size_t nsvc = st_proto_index_service_count(idx);
    size_t *closure = calloc(nfiles ? nfiles : 1, sizeof(size_t));
    ProtobufCBinaryData *blobs = calloc(nfiles ? nfiles : 1, sizeof(*blobs));
    Grpc__Reflection__V1alpha__ServiceResponse *svcs = calloc(nsvc ? nsvc : 1, sizeof(*svcs));
    Grpc__Reflection__V1alpha__ServiceResponse **svcp = calloc(nsvc ? nsvc : 1, sizeof(*svcp));
    if (!closure || !blobs || !svcs || !svcp) {
        st_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "ServerReflectionInfo: out of memory");
        goto done;
    }
    resp.valid_host = q->host;
    resp.original_request = q;

    int file = -1;
    const char *what = NULL;
    switch (q->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        /* Only services this node serves: the set may describe more (e.g. replication). */
        for (size_t i = 0; i < nsvc; i++) {
            const char *name = st_proto_index_service(idx, i);
            if (!st_server_serves(refl->srv, name))
                continue;
            grpc__reflection__v1alpha__service_response__init(&svcs[lsr.n_service]);
            svcs[lsr.n_service].name = (char *)name;
            svcp[lsr.n_service] = &svcs[lsr.n_service];
            lsr.n_service++;
        }
        lsr.service = svcp;
        resp.message_response_case =
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        resp.list_services_response = &lsr;
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = st_proto_index_find_file(idx, q->file_by_filename);
        what = "file";
        snprintf(msg, sizeof(msg), "file '%s' not found", q->file_by_filename);
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        file = st_proto_index_find_symbol(idx, q->file_containing_symbol);
        what = "symbol";
        snprintf(msg, sizeof(msg), "symbol '%s' not found", q->file_containing_symbol);
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        snprintf(msg, sizeof(msg), "extension %d of '%s' not found (strata declares none)",
                 q->file_containing_extension ? q->file_containing_extension->extension_number : 0,
                 q->file_containing_extension && q->file_containing_extension->containing_type
                     ? q->file_containing_extension->containing_type
                     : "");
        error_response(&resp, &err, GRPC_STATUS_NOT_FOUND, msg);
        break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        if (st_proto_index_is_message(idx, q->all_extension_numbers_of_type)) {
            enr.base_type_name = q->all_extension_numbers_of_type;
            resp.message_response_case =
                GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
            resp.all_extension_numbers_response = &enr;
        } else {
            snprintf(msg, sizeof(msg), "type '%s' not found", q->all_extension_numbers_of_type);
            error_response(&resp, &err, GRPC_STATUS_NOT_FOUND, msg);
        }
        break;
    default:
        snprintf(msg, sizeof(msg), "the request sets none of the message_request fields");
        error_response(&resp, &err, GRPC_STATUS_INVALID_ARGUMENT, msg);
        break;
    }
    if (what) {
        if (file < 0) {
            error_response(&resp, &err, GRPC_STATUS_NOT_FOUND, msg);
        } else {
            size_t n = st_proto_index_closure(idx, (size_t)file, closure, nfiles);
            for (size_t i = 0; i < n && i < nfiles; i++) {
                st_slice b = st_proto_index_file_bytes(idx, closure[i]);
                blobs[i].data = (uint8_t *)b.data;
                blobs[i].len = b.len;
            }
            fdr.n_file_descriptor_proto = n < nfiles ? n : nfiles;
            fdr.file_descriptor_proto = blobs;
            resp.message_response_case =
                GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
            resp.file_descriptor_response = &fdr;
        }
    }
    st_call_send(call, &resp.base, false, on_sent);

done:
    free(closure);
    free(blobs);
    free(svcs);
    free(svcp);
}

static void on_request(st_call *call, const uint8_t *data, size_t len, bool got)
{
    st_reflection *refl = st_call_method(call)->svc;
    if (!got) {
        /* The client finished sending (or went away): end the stream. */
        if (st_call_cancelled(call))
            st_call_fail(call, GRPC_STATUS_CANCELLED, "ServerReflectionInfo: cancelled");
        else
            st_call_finish(call);
        return;
    }
    refl_request *q = grpc__reflection__v1alpha__server_reflection_request__unpack(NULL, len, data);
    if (!q) {
        st_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "ServerReflectionInfo: a request of %zu bytes does not parse as "
                     "ServerReflectionRequest",
                     len);
        return;
    }
    answer(refl, call, q);
    grpc__reflection__v1alpha__server_reflection_request__free_unpacked(q, NULL);
}

static void handle_info(void *svc, st_call *call, const uint8_t *req, size_t len, bool has_req)
{
    st_call_recv(call, on_request);
}

st_status st_reflection_create(st_server *srv, st_reflection **out)
{
    *out = NULL;
    st_reflection *r = calloc(1, sizeof(*r));
    if (!r)
        return st_error(ST_NO_MEMORY, "reflection: out of memory");
    r->srv = srv;
    st_status s =
        st_proto_index_create(st_proto_descriptor_set, st_proto_descriptor_set_len, &r->idx);
    if (s != ST_OK)
        goto fail;
    const st_method methods[] = {
        {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", ST_METHOD_BIDI_STREAM,
         false, handle_info, r, false},
        {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", ST_METHOD_BIDI_STREAM, false,
         handle_info, r, false},
    };
    for (size_t i = 0; i < 2 && s == ST_OK; i++)
        s = st_server_add_method(srv, &methods[i]);
    if (s != ST_OK)
        goto fail;
    *out = r;
    return ST_OK;

fail:
    st_proto_index_destroy(r->idx);
    free(r);
    return s;
}

void st_reflection_destroy(st_reflection *r)
{
    if (!r)
        return;
    st_proto_index_destroy(r->idx);
    free(r);
}
