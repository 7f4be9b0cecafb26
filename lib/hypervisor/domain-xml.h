/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What a list needs from a domain's XML (virDomainGetXMLDesc), read in one pass: one call per
 * guest instead of one for its memory and one for its metadata. Pure. */

#include <stdbool.h>
#include <glib.h>

typedef struct DomainXmlInfo {
        guint64 memory_kib; /* <currentMemory>, else <memory> (libvirt writes KiB) */
        bool hostdev;       /* a <hostdev> or an <interface type='hostdev'>: cannot be saved */
        char *metadata;     /* the element of @ns in <metadata>, as XML, or NULL */
} DomainXmlInfo;

/* -EINVAL when @xml is not a domain's XML. */
int domain_xml_scan(const char *xml, const char *ns, DomainXmlInfo *ret);
void domain_xml_info_clear(DomainXmlInfo *i);
