/** Glance's image members (glance/api/v2/image_members.py): share a `shared` image with other projects. */
import type { FastifyInstance } from 'fastify';
import type { ImageService } from '../../core/image-service.js';
import { memberView } from '../glance-view.js';
import { CreateMemberBody, UpdateMemberBody } from '../image-schema.js';

type MemberParams = { id: string; member_id: string };

export async function imageMemberRoutes(app: FastifyInstance, images: ImageService): Promise<void> {
  app.post('/v2/images/:id/members', { schema: { body: CreateMemberBody } }, async (request) => {
    const { id } = request.params as { id: string };
    const member = await images.addMember(request.caller, id, (request.body as { member: string }).member);
    return memberView(id, member);
  });

  app.get('/v2/images/:id/members', async (request) => {
    const { id } = request.params as { id: string };
    const members = await images.listMembers(request.caller, id);
    return { members: members.map((m) => memberView(id, m)), schema: '/v2/schemas/members' };
  });

  app.get('/v2/images/:id/members/:member_id', async (request) => {
    const { id, member_id } = request.params as MemberParams;
    return memberView(id, await images.getMember(request.caller, id, member_id));
  });

  app.put('/v2/images/:id/members/:member_id', { schema: { body: UpdateMemberBody } }, async (request) => {
    const { id, member_id } = request.params as MemberParams;
    const member = await images.updateMember(request.caller, id, member_id, (request.body as { status: string }).status);
    return memberView(id, member);
  });

  app.delete('/v2/images/:id/members/:member_id', async (request, reply) => {
    const { id, member_id } = request.params as MemberParams;
    await images.removeMember(request.caller, id, member_id);
    return reply.code(204).send();
  });
}
