namespace Throughput.Http;

/// <summary>The request and response headers an endpoint's contract includes, as endpoint metadata the OpenAPI document reads.</summary>
public enum ContractHeader
{
    /// <summary>Optional request header: a retry with the same key gets the first answer, never a second effect.</summary>
    IdempotencyKey,

    /// <summary>Required request header: the ETag of the revision the change was decided on.</summary>
    IfMatch,

    /// <summary>Response header on success: the resource's revision, to send back in If-Match.</summary>
    ETag,
}

public sealed record ContractHeaders(ContractHeader Header);

public static class HeaderContracts
{
    public static RouteHandlerBuilder WithHeader(this RouteHandlerBuilder builder, ContractHeader header) => builder.WithMetadata(new ContractHeaders(header));
}
