/* The one way tardis reads a JSON file: like jansson's json_load_file, but
 * the file is opened with td_open_regular, so a FIFO or a device in place of
 * run.json, head.json or any vis JSON is refused at once instead of blocking
 * the reader forever. Internal (jansson stays out of the public headers). */
#ifndef TD_CORE_JSON_FILE_H
#define TD_CORE_JSON_FILE_H

#include <jansson.h>

/* Returns the parsed value (the caller json_decref's it), or NULL with
 * je->text saying why: the parse error, or the open/type error of
 * td_open_regular (then je->line is 0). */
json_t *td__json_load_file(const char *path, size_t flags, json_error_t *je);

#endif
