import type { Identity } from './bearer-tokens.js';
import type { ResourceType } from './resource-types.js';

/** One API request, resolved from its URL: which resource, where, and with which options. */
export interface RequestContext {
  type: ResourceType;
  /** The version in the URL (objects are returned with this apiVersion). */
  version: string;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
  query: URLSearchParams;
  userAgent: string;
  identity: Identity;
  /** Warnings for the Warning response header (unknown fields under fieldValidation=Warn). */
  warnings: string[];
}
